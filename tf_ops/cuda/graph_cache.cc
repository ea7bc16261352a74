#include "tf_ops/cuda/graph_cache.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <string>

namespace fastbert {
namespace cuda {
namespace {

// FASTBERT_GRAPH_STATS=1: a line on stderr every 1000 calls of a key, to tell whether a serving
// loop replays, and where its device time goes (in the graph, and between graphs).
constexpr int kStatsRing = 64;

bool StatsOn() {
  static const bool on = [] {
    const char* v = std::getenv("FASTBERT_GRAPH_STATS");
    return v != nullptr && std::string(v) == "1";
  }();
  return on;
}

}  // namespace

bool GraphsEnabled() {
  static const bool enabled = [] {
    const char* v = std::getenv("FASTBERT_CUDA_GRAPHS");
    return v == nullptr || std::string(v) != "0";
  }();
  return enabled;
}

GraphCache::GraphCache(size_t max_execs) : max_execs_(std::max<size_t>(1, max_execs)), max_keys_(4 * max_execs_) {}

GraphCache::~GraphCache() {
  while (!entries_.empty()) Forget(entries_.begin());
}

GraphCache::Stats GraphCache::stats() const {
  Stats s = counters_;
  s.keys = entries_.size();
  s.execs = execs_;
  s.max_keys = max_keys_;
  s.max_execs = max_execs_;
  return s;
}

void GraphCache::Forget(std::map<Key, Entry>::iterator it) {
  for (auto& x : it->second.execs) cudaGraphExecDestroy(x.exec);
  execs_ -= it->second.execs.size();
  for (auto m : it->second.marks) cudaEventDestroy(m);
  lru_.erase(it->second.lru);
  entries_.erase(it);
}

GraphCache::Entry& GraphCache::Find(const Key& key) {
  auto it = entries_.find(key);
  if (it != entries_.end()) {
    lru_.splice(lru_.begin(), lru_, it->second.lru);
    return it->second;
  }
  if (entries_.size() >= max_keys_) {
    Forget(entries_.find(lru_.back()));
    ++counters_.evicted_keys;
  }
  lru_.push_front(key);
  Entry& e = entries_[key];
  e.lru = lru_.begin();
  return e;
}

void GraphCache::EvictExecs(size_t keep) {
  while (execs_ > keep) {
    Entry* owner = nullptr;
    size_t index = 0;
    uint64_t oldest = UINT64_MAX;
    for (auto& kv : entries_) {
      for (size_t i = 0; i < kv.second.execs.size(); ++i) {
        if (kv.second.execs[i].last_use < oldest) {
          oldest = kv.second.execs[i].last_use;
          owner = &kv.second;
          index = i;
        }
      }
    }
    if (owner == nullptr) return;
    cudaGraphExecDestroy(owner->execs[index].exec);
    owner->execs.erase(owner->execs.begin() + index);
    --execs_;
    ++counters_.evicted_execs;
  }
}

Status GraphCache::Run(const Key& key, const Addresses& addresses,
                       const std::function<Status(cudaGraph_t*)>& capture, const std::function<Status()>& direct,
                       cudaStream_t stream) {
  Entry& e = Find(key);
  ++e.calls;
  if (e.calls < 2 || e.direct) {
    ++counters_.direct;
    return direct();
  }
  Exec* x = nullptr;
  for (auto& candidate : e.execs) {
    if (candidate.addresses == addresses) x = &candidate;
  }
  if (x != nullptr) {
    ++e.hits;
    ++counters_.replays;
    x->last_use = ++tick_;
    return Launch(key, e, *x, stream);
  }
  if (++e.misses > 16 && e.misses > 2 * e.hits) {
    e.direct = true;  // its executables stay until evicted; they are never replayed again
    ++counters_.direct;
    if (StatsOn()) std::fprintf(stderr, "fastbert graphs: a key gave up on graphs (%lld misses)\n",
                                static_cast<long long>(e.misses));
    return direct();
  }
  cudaGraph_t graph = nullptr;
  FB_OK(capture(&graph));
  ++counters_.captures;
  if (e.execs.size() < kExecsPerKey) {
    EvictExecs(max_execs_ - 1);  // may take one of e's own older executables: e stays valid
    e.execs.emplace_back();
    ++execs_;
    x = &e.execs.back();
  } else {
    x = &*std::min_element(e.execs.begin(), e.execs.end(),
                           [](const Exec& a, const Exec& b) { return a.last_use < b.last_use; });
    cudaGraphExecUpdateResultInfo info;
    if (cudaGraphExecUpdate(x->exec, graph, &info) != cudaSuccess) {
      cudaGetLastError();  // clear the refused update's error
      cudaGraphExecDestroy(x->exec);
      x->exec = nullptr;
    }
  }
  if (x->exec == nullptr) {
    const cudaError_t err = cudaGraphInstantiate(&x->exec, graph, 0);
    if (err != cudaSuccess) {
      cudaGraphDestroy(graph);
      e.execs.erase(e.execs.begin() + (x - e.execs.data()));
      --execs_;
      return CudaError("cudaGraphInstantiate", err);
    }
  }
  cudaGraphDestroy(graph);
  x->addresses = addresses;
  x->last_use = ++tick_;
  return Launch(key, e, *x, stream);
}

Status GraphCache::Launch(const Key& key, Entry& e, Exec& x, cudaStream_t stream) {
  if (!StatsOn()) {
    FB_CUDA("cudaGraphLaunch", cudaGraphLaunch(x.exec, stream));
    return Status::Ok();
  }
  if (e.marks.empty()) {
    e.marks.resize(2 * kStatsRing);
    for (auto& m : e.marks) FB_CUDA("cudaEventCreate", cudaEventCreate(&m));
  }
  const int slot = 2 * static_cast<int>(e.marked++ % kStatsRing);
  FB_CUDA("cudaEventRecord", cudaEventRecord(e.marks[slot], stream));
  FB_CUDA("cudaGraphLaunch", cudaGraphLaunch(x.exec, stream));
  FB_CUDA("cudaEventRecord", cudaEventRecord(e.marks[slot + 1], stream));
  if (e.calls % 1000 != 0 || e.marked <= kStatsRing) return Status::Ok();
  // Device time in the last replays' graphs, and between one replay's end and the next's start.
  double in_graph = 0, between = 0;
  int n = 0;
  if (cudaEventSynchronize(e.marks[slot + 1]) == cudaSuccess) {
    for (int64_t i = e.marked - kStatsRing + 1; i < e.marked; ++i) {
      const int cur = 2 * static_cast<int>(i % kStatsRing), prev = 2 * static_cast<int>((i - 1) % kStatsRing);
      float a = 0, b = 0;
      if (cudaEventElapsedTime(&a, e.marks[cur], e.marks[cur + 1]) != cudaSuccess ||
          cudaEventElapsedTime(&b, e.marks[prev + 1], e.marks[cur]) != cudaSuccess) {
        cudaGetLastError();
        continue;
      }
      in_graph += a * 1e3;
      between += b * 1e3;
      ++n;
    }
  }
  std::string k;
  for (int64_t v : key) k += (k.empty() ? "" : ",") + std::to_string(v);
  std::fprintf(stderr,
               "fastbert graphs key [%s]: calls %lld replays %lld misses %lld execs %zu; device us per replay: "
               "%.1f in the graph, %.1f before it\n",
               k.c_str(), static_cast<long long>(e.calls), static_cast<long long>(e.hits),
               static_cast<long long>(e.misses), e.execs.size(), n ? in_graph / n : 0.0, n ? between / n : 0.0);
  return Status::Ok();
}

}  // namespace cuda
}  // namespace fastbert
