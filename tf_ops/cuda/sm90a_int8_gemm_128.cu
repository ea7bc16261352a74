// The int8 GEMM, int32 out, 128x128x128 tiles (many output tiles).
// See sm90a_int8_gemm.cuh.
#include "tf_ops/cuda/sm90a_int8_gemm.cuh"

FB_INT8_GEMM_TILE(Tile128, 128, 128, 128, false)
