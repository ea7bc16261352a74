#!/usr/bin/env bash
# Check and time on a GPU machine where TensorFlow sees the GPU, in one go. Expects the op library
# built already (make lib, carried in fastbert_tf/), and for some parts more carried along:
#   bash benchmarks/gpu_check_and_time.sh [tests] [bench] [mrpc] [mrpc_int8] [soak] [breakdown] [sanitize]
#                                         [sanitize_int8] [int8_tests]
#   tests      the GPU tests, and the CPU kernel tests (the host CPU may have AMX)
#   bench      benchmarks/bench.py on the seed grid: XLA, op, op_rp; passes and per_call modes; fixed,
#              uniform and MRPC-train lengths (BENCH_DTYPE, BENCH_MODES, BENCH_VARIANTS, BENCH_PASSES,
#              BENCH_CALLS, BENCH_LENGTHS)
#   mrpc       MRPC dev through run_classifier_wrap, padded and --remove_padding (DATA: a folder with
#              mrpc/*.tsv and minilm16/: bert_model.ckpt, bert_config.json, vocab.txt)
#   mrpc_int8  MRPC dev, int8_mode 1 and 2 (INT8_MODES), on the GPU and on the CPU, float16 activations
#              (INT8_FLOATX)
#              (DATA: minilm_int8_1/, minilm_int8_2/ from ckpt_quantization, with config and vocab)
#   int8_tests the int8 tests only (tests/test_int8.py, GPU and CPU)
#   sanitize_int8  compute-sanitizer memcheck over GPU int8 tests (both modes, padded and packed)
#   soak       tests/gpu_traffic.py: 100,000 calls of random shapes and lengths, memory and caches
#   breakdown, sanitize: the TF-free harness (make harness; tests/cuda/check_runner.py make)
set -uo pipefail
OUT=${OUT:-out}
DATA=${DATA:-.device-data}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=2
parts=${*:-tests bench}
quiet() { grep -v "^WARNING\|^I0000\|^W0000\|^W1\|^I1\|Saver is deprecated"; }
for part in $parts; do
  case $part in
    tests) python3 -m pytest -m gpu -q -rs -p no:cacheprovider tests 2>&1 | tee "$OUT/gpu_tests.log" | tail -25
           python3 -m pytest -q -rs -p no:cacheprovider tests/test_cpu_kernels.py 2>&1 | tee "$OUT/cpu_kernel_tests.log" | tail -6 ;;
    bench) dtype=${BENCH_DTYPE:-float16}
           python3 -m benchmarks.bench --device gpu --dtype "$dtype" --grid seed --json "$OUT/h200_$dtype.json" \
             --variants "${BENCH_VARIANTS:-xla,op,op_rp}" --passes "${BENCH_PASSES:-50}" \
             --modes "${BENCH_MODES:-passes,per_call}" --calls "${BENCH_CALLS:-100}" \
             --lengths "${BENCH_LENGTHS:-fixed,uniform,dataset:$DATA/mrpc/train.tsv}" --vocab_file "${BENCH_VOCAB:-$DATA/minilm16/vocab.txt}" 2>&1 | quiet | tee "$OUT/bench_$dtype.log" ;;
    mrpc)  for rp in "" --remove_padding; do
             python3 -m glue_squad.run_classifier_wrap --task_name mrpc --data_dir "$DATA/mrpc" \
               --vocab_file "$DATA/minilm16/vocab.txt" --bert_config_file "$DATA/minilm16/bert_config.json" \
               --init_checkpoint "$DATA/minilm16/bert_model.ckpt" --max_seq_length 128 --eval_batch_size 32 \
               --output_dir "$OUT/mrpc$rp" --do_eval --floatx float16 $rp 2>&1 | quiet | tail -12
           done
           paste "$OUT/mrpc/eval_results.txt" "$OUT/mrpc--remove_padding/eval_results.txt" | tee "$OUT/mrpc.txt" ;;
    int8_tests) python3 -m pytest -q -rs -p no:cacheprovider tests/test_int8.py -s 2>&1 | tee "$OUT/int8_tests.log" \
             | grep -v "^\.*$" | tail -${INT8_TAIL:-60} ;;
    mrpc_int8)
      fx=${INT8_FLOATX:-float16}
      for m in ${INT8_MODES:-1 2}; do
        for dev in gpu cpu; do
          vis=""; [ $dev = cpu ] && vis="-1"
          CUDA_VISIBLE_DEVICES=${vis:-${CUDA_VISIBLE_DEVICES:-0}} python3 -m glue_squad.run_classifier_wrap --task_name mrpc \
            --data_dir "$DATA/mrpc" --vocab_file "$DATA/minilm_int8_$m/vocab.txt" \
            --bert_config_file "$DATA/minilm_int8_$m/bert_config.json" --init_checkpoint "$DATA/minilm_int8_$m/model.ckpt" \
            --int8_mode $m --max_seq_length 128 --eval_batch_size 32 --output_dir "$OUT/mrpc_int8_${m}_${fx}_$dev" \
            --do_eval --floatx $fx ${MRPC_INT8_FLAGS:-} 2>&1 | quiet | tail -4
          echo "int8_mode $m $fx $dev: $(tr '\n' ' ' < "$OUT/mrpc_int8_${m}_${fx}_$dev/eval_results.txt")" | tee -a "$OUT/mrpc_int8.txt"
        done
        paste "$OUT/mrpc_int8_${m}_${fx}_gpu/eval_predictions.txt" "$OUT/mrpc_int8_${m}_${fx}_cpu/eval_predictions.txt" \
          | awk -v m=$m -v fx=$fx '$1 != $2 {n++} END {print "int8_mode " m " " fx ": GPU and CPU predictions differ on " n+0 " of " NR}' \
          | tee -a "$OUT/mrpc_int8.txt"
      done ;;
    sanitize_int8)
      compute-sanitizer --tool memcheck --print-limit 20 python3 -m pytest -q -p no:cacheprovider tests/test_int8.py \
        -k "gpu_int8_matches and float16 and (3x17x2x32x2 or 4x130x2x128x1)" 2>&1 | grep -v "^\.*$" | tail -15 | tee "$OUT/sanitize_int8.log" ;;
    soak)  python3 tests/gpu_traffic.py --calls "${SOAK_CALLS:-100000}" --shapes wide --dtypes float16 \
             --check_every 5000 --report_every 10000 2>&1 | quiet | tee "$OUT/soak.log" | cut -c1-400 ;;
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
