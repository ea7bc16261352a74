// What the packed CPU GEMMs (sgemm.cc, igemm.cc) share: per-thread packing buffers and the
// split of C into blocks over the intra-op pool.
#pragma once

#define EIGEN_USE_THREADS

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <memory>

#include "unsupported/Eigen/CXX11/Tensor"

namespace fastbert {
namespace cpu {

// A 64-byte aligned buffer of the calling thread, grown on demand and kept for its next call.
inline void* ThreadScratch(int which, size_t bytes) {
  struct Free {
    void operator()(void* p) const { std::free(p); }
  };
  thread_local std::unique_ptr<void, Free> buf[2];
  thread_local size_t size[2] = {0, 0};
  if (size[which] < bytes) {
    buf[which].reset(std::aligned_alloc(64, (bytes + 63) / 64 * 64));
    size[which] = bytes;
  }
  return buf[which].get();
}

// Calls block(m0, m1, n0, n1) for blocks of C (rows multiple of mr, columns of nr), about
// task_m x task_n each and at least ~2 per thread so that uneven blocks still balance.
template <typename Fn>
void ParallelBlocks(const Eigen::ThreadPoolDevice& d, int64_t m, int64_t n, int64_t k, int64_t mr, int64_t nr,
                    int64_t task_m, int64_t task_n, Fn block) {
  const int64_t threads = std::max(1, d.numThreads());
  const int64_t tiles_n = (n + task_n - 1) / task_n;
  int64_t tiles_m = (m + task_m - 1) / task_m;
  while (tiles_m * tiles_n < 2 * threads && (m + 2 * tiles_m - 1) / (2 * tiles_m) >= 4 * mr) tiles_m *= 2;
  const int64_t block_m = ((m + tiles_m - 1) / tiles_m + mr - 1) / mr * mr;
  const int64_t block_n = ((n + tiles_n - 1) / tiles_n + nr - 1) / nr * nr;
  const int64_t per_row = (n + block_n - 1) / block_n;
  const int64_t tiles = ((m + block_m - 1) / block_m) * per_row;
  const Eigen::TensorOpCost cost(4.0 * (block_m + block_n) * k, 4.0 * block_m * block_n,
                                 2.0 * block_m * block_n * k / 16.0);
  d.parallelFor(tiles, cost, [&](Eigen::Index first, Eigen::Index last) {
    for (Eigen::Index t = first; t < last; ++t) {
      const int64_t m0 = (t / per_row) * block_m, n0 = (t % per_row) * block_n;
      block(m0, std::min(m, m0 + block_m), n0, std::min(n, n0 + block_n));
    }
  });
}

// Calls pack(first_sliver, last_sliver, chunk) over the slivers of both operands of every
// depth chunk, in units of up to 8 slivers, over the pool.
template <typename Fn>
void ParallelPack(const Eigen::ThreadPoolDevice& d, int64_t chunks, int64_t a_slivers, int64_t b_slivers,
                  double bytes_per_sliver, Fn pack) {
  const int64_t a_units = (a_slivers + 7) / 8, b_units = (b_slivers + 7) / 8;
  d.parallelFor(chunks * (a_units + b_units),
                Eigen::TensorOpCost(8 * bytes_per_sliver, 8 * bytes_per_sliver, 8 * bytes_per_sliver / 4),
                [&](Eigen::Index first, Eigen::Index last) {
                  for (Eigen::Index u = first; u < last; ++u) {
                    const int64_t chunk = u / (a_units + b_units), r = u % (a_units + b_units);
                    if (r < a_units) {
                      pack(true, r * 8, std::min(a_slivers, r * 8 + 8), chunk);
                    } else {
                      pack(false, (r - a_units) * 8, std::min(b_slivers, (r - a_units) * 8 + 8), chunk);
                    }
                  }
                });
}

}  // namespace cpu
}  // namespace fastbert
