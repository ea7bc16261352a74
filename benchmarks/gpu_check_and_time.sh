#!/usr/bin/env bash
# Check and time on a GPU machine where TensorFlow sees the GPU, in one go. Expects the op library
# built already (make lib, carried in fastbert_tf/) and, for the sanitizer and breakdown parts, the
# TF-free harness (make harness; tests/cuda/check_runner.py make --out .device-cases).
#   bash benchmarks/gpu_check_and_time.sh [tests] [bench] [breakdown] [sanitize]
set -uo pipefail
OUT=${OUT:-out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=2
parts=${*:-tests bench}
for part in $parts; do
  case $part in
    tests) python3 -m pytest -m gpu -q -rs -p no:cacheprovider tests 2>&1 | tee "$OUT/gpu_tests.log" | tail -25 ;;
    # Plain TF at 50 unrolled passes takes minutes to trace per shape: BENCH_VARIANTS=tf,xla,op,op_rp
    # (with BENCH_PASSES=20) adds it, as for results/h200_fp16_p20.json.
    bench) python3 -m benchmarks.bench --device gpu --dtype float16 --grid seed --json "$OUT/h200_fp16.json" \
             --variants "${BENCH_VARIANTS:-xla,op,op_rp}" --passes "${BENCH_PASSES:-50}" \
             2>&1 | grep -v "^WARNING\|^I0000\|^W0000" | tee "$OUT/bench.log" ;;
    breakdown) python3 tests/cuda/check_runner.py breakdown --torch --json "$OUT/breakdown.json" 2>&1 \
             | tee "$OUT/breakdown.log" ;;
    sanitize)
      for tool in memcheck racecheck; do
        compute-sanitizer --tool $tool --print-limit 20 python3 tests/cuda/check_runner.py check --quick \
          --only 'case0[1-5].npz' 2>&1 | grep -v "^ok\|rp on vs off" | tail -15 | tee "$OUT/sanitize_$tool.log"
      done ;;
    *) echo "unknown part $part"; exit 2 ;;
  esac
done
