// What the CPU (and the OS) offer the CPU GEMMs, from cpuid: read once per process by the kernels'
// dispatch (sgemm.cc, igemm.cc).
#pragma once

#include <cpuid.h>
#include <immintrin.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstdint>

namespace fastbert {
namespace cpu {

struct CpuFeatures {
  bool avx512 = false;       // F, VL, BW, DQ
  bool avx512_vnni = false;  // vpdpbusd
  bool avx512_bf16 = false;  // vcvtneps2bf16, vdpbf16ps
  bool amx_tile = false, amx_bf16 = false, amx_int8 = false;
  bool amx_permitted = false;  // Linux granted this process the tile state (XTILEDATA)
};

inline const CpuFeatures& GetCpuFeatures() {
  static const CpuFeatures f = [] {
    CpuFeatures c;
    unsigned eax, ebx, ecx, edx;
    if (__get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx)) {
      // EBX: 16 AVX512F, 17 DQ, 30 BW, 31 VL; ECX: 11 VNNI; EDX: 22 AMX-BF16, 24 AMX-TILE, 25 AMX-INT8.
      c.avx512 = ((ebx >> 16) & 1) && ((ebx >> 17) & 1) && ((ebx >> 30) & 1) && ((ebx >> 31) & 1);
      c.avx512_vnni = c.avx512 && ((ecx >> 11) & 1);
      c.amx_bf16 = (edx >> 22) & 1;
      c.amx_tile = (edx >> 24) & 1;
      c.amx_int8 = (edx >> 25) & 1;
    }
    if (__get_cpuid_count(7, 1, &eax, &ebx, &ecx, &edx)) c.avx512_bf16 = c.avx512 && ((eax >> 5) & 1);
    // The OS must also save the registers: __builtin_cpu_supports checks XCR0 for AVX-512.
    __builtin_cpu_init();
    if (!__builtin_cpu_supports("avx512f")) c.avx512 = c.avx512_vnni = c.avx512_bf16 = false;
    if (c.amx_tile) {
      constexpr long kArchReqXcompPerm = 0x1023, kXfeatureXtiledata = 18;
      c.amx_permitted = syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtiledata) == 0;
    }
    return c;
  }();
  return f;
}

// Both AMX kernels' tile configuration: tiles 0-7 as 16 rows of 64 bytes. Gives the pool's thread
// the tile state until ReleaseTiles() (call it when done, so context switches need not save it).
#pragma GCC push_options
#pragma GCC target("amx-tile")
inline void ConfigureTiles16x64() {
  struct alignas(64) TileConfig {
    uint8_t palette = 1, start_row = 0, reserved[14] = {};
    uint16_t colsb[16] = {};
    uint8_t rows[16] = {};
  } cfg;
  for (int t = 0; t < 8; ++t) {
    cfg.rows[t] = 16;
    cfg.colsb[t] = 64;
  }
  // GCC does not see ldtilecfg read the struct and drops the stores above without this.
  asm volatile("" : : "r"(&cfg) : "memory");
  _tile_loadconfig(&cfg);
}
inline void ReleaseTiles() { _tile_release(); }
#pragma GCC pop_options

}  // namespace cpu
}  // namespace fastbert
