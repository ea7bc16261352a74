// The int8 GEMM, float16 out with dequantize + bias, 128x128x128 tiles (many output tiles).
// See sm90a_int8_gemm.cuh.
#include "tf_ops/cuda/sm90a_int8_gemm.cuh"

FB_INT8_GEMM_TILE(F16Tile128, 128, 128, 128, true)
