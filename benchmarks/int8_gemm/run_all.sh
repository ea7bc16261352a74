#!/bin/bash
# Runs on the GPU machine from the repo root: bash benchmarks/int8_gemm/run_all.sh
# Needs .device-int8/int8_gemm (built here with `make -j2` in benchmarks/int8_gemm, carried).
# Writes everything under $OUT (default ./out_int8).
OUT=${OUT:-out_int8}; mkdir -p "$OUT"
BIN=.device-int8/int8_gemm
# Fallback: if the binary built on the CPU machine cannot start here (libc, loader), rebuild it here
# from the carried CUTLASS headers (.device-int8/cutlass_include), all variants in parallel.
"$BIN" --probe > "$OUT/probe.out" 2>&1; PRC=$?; cat "$OUT/probe.out"
if [ $PRC -ne 0 ]; then
  echo "carried binary does not start here (rc=$PRC): rebuilding"
  (cd benchmarks/int8_gemm && make -B -j16 CUTLASS=$PWD/../../.device-int8/cutlass_include) > "$OUT/build.log" 2>&1
  tail -5 "$OUT/build.log"
fi
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,power.limit,temperature.gpu --format=csv | tee "$OUT/nvidia_smi.txt"
if command -v cuobjdump >/dev/null; then
  cuobjdump --dump-sass "$BIN" | grep -oE '\b[A-Z]*GMMA[.A-Z0-9x]*' | sort | uniq -c | tee "$OUT/sass_gmma.txt"
fi
echo "== cutlass run 1"; timeout 240 "$BIN" | tee "$OUT/cutlass.jsonl"; echo "rc=${PIPESTATUS[0]}"
echo "== baseline run 1"; PYTHONUNBUFFERED=1 timeout 200 python3 benchmarks/int8_gemm/baseline.py | tee "$OUT/baseline.jsonl"; echo "rc=${PIPESTATUS[0]}"
echo "== cutlass run 2"; timeout 120 "$BIN" > "$OUT/cutlass_run2.jsonl"; echo "rc=$?"
if [ "$SECONDS" -lt 200 ]; then
  echo "== baseline run 2"; PYTHONUNBUFFERED=1 timeout 120 python3 benchmarks/int8_gemm/baseline.py > "$OUT/baseline_run2.jsonl"; echo "rc=$?"
fi
echo "elapsed ${SECONDS}s"
