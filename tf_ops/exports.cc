// C entry points that fastbert_tf reads with ctypes (the library TF loaded, same handle).
#include <cstdint>

#include "tf_ops/common/row_buckets.h"

// fastbert_tf.row_buckets(capacity): the distinct row counts (ascending) that remove_padding calls
// with 1..capacity tokens run over on the GPU. Writes up to max_out of them; returns how many
// there are.
extern "C" __attribute__((visibility("default"))) int fastbert_row_buckets(int64_t capacity, int64_t* out,
                                                                           int max_out) {
  int n = 0;
  for (int64_t t = 1; t <= capacity;) {
    const int64_t bucket = fastbert::RowBucket(t, capacity);
    if (n < max_out) out[n] = bucket;
    ++n;
    t = bucket + 1;
  }
  return n;
}
