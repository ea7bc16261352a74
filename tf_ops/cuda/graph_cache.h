// Executable CUDA graphs of whole encoder calls, and the policy of when to capture, replay or
// launch directly. A replay costs one launch instead of ~8 per layer (measured: 31-38 us of host
// work per call and launch gaps removed at batch 1).
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <list>
#include <map>
#include <vector>

#include "tf_ops/cuda/cuda_status.h"

namespace fastbert {
namespace cuda {

// Key: everything that fixes the enqueued work (dims, dtype, row bucket, alignments). Addresses:
// every device address a graph bakes in (weights, the scratch arena's generation); the input,
// output and lengths are read from device memory by the kernels, so they never enter either.
//
// Policy and bounds:
//  - a key is captured from its second call on, so shapes seen once never pay for a capture;
//  - a key keeps up to kExecsPerKey executables, one per address set (a loop alternating two
//    weight sets keeps both); a new set past that re-points its least recently used executable
//    with cudaGraphExecUpdate (re-instantiating if the update is refused);
//  - a key whose addresses keep changing (more than 16 misses and more than twice its hits, e.g.
//    weights passed as new tensors every call) launches directly from then on;
//  - at most max_execs executables in all ($FASTBERT_GRAPH_CACHE, default 512): past that the
//    least recently replayed executable is destroyed; at most 4 * max_execs keys are remembered,
//    the least recently used key (with its executables) forgotten first.
class GraphCache {
 public:
  using Key = std::vector<int64_t>;
  using Addresses = std::vector<const void*>;
  static constexpr size_t kExecsPerKey = 4;

  struct Stats {
    size_t keys = 0, execs = 0, max_keys = 0, max_execs = 0;
    int64_t replays = 0, captures = 0, direct = 0, evicted_execs = 0, evicted_keys = 0;
  };

  explicit GraphCache(size_t max_execs);
  ~GraphCache();
  GraphCache(const GraphCache&) = delete;
  GraphCache& operator=(const GraphCache&) = delete;

  // One call: replays the executable of (key, addresses), capturing it first with capture()
  // (which enqueues the call on a capturing stream and returns the graph) when the policy says
  // so, or runs direct() (which enqueues the call on `stream`).
  Status Run(const Key& key, const Addresses& addresses, const std::function<Status(cudaGraph_t*)>& capture,
             const std::function<Status()>& direct, cudaStream_t stream);

  Stats stats() const;

 private:
  struct Exec {
    cudaGraphExec_t exec = nullptr;
    Addresses addresses;
    uint64_t last_use = 0;
  };
  struct Entry {
    int64_t calls = 0, hits = 0, misses = 0;
    bool direct = false;
    std::vector<Exec> execs;
    std::list<Key>::iterator lru;
    // FASTBERT_GRAPH_STATS=1 only: events around the last kStatsRing replays.
    std::vector<cudaEvent_t> marks;
    int64_t marked = 0;
  };
  Entry& Find(const Key& key);
  void EvictExecs(size_t keep);  // until at most `keep` executables remain
  void Forget(std::map<Key, Entry>::iterator it);
  Status Launch(const Key& key, Entry& e, Exec& x, cudaStream_t stream);

  size_t max_execs_, max_keys_;
  std::map<Key, Entry> entries_;
  std::list<Key> lru_;  // keys, most recently used first
  size_t execs_ = 0;
  uint64_t tick_ = 0;
  Stats counters_;
};

// $FASTBERT_CUDA_GRAPHS=0 turns graphs off (every call launches directly).
bool GraphsEnabled();

}  // namespace cuda
}  // namespace fastbert
