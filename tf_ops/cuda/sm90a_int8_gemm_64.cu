// The int8 GEMM, int32 out, 64x128x128 tiles (few output tiles: more of them keep the 132 SMs busy).
// See sm90a_int8_gemm.cuh.
#include "tf_ops/cuda/sm90a_int8_gemm.cuh"

FB_INT8_GEMM_TILE(Tile64, 64, 128, 128, false)
