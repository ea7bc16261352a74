"""Quantizes a BERT checkpoint for FastBertEncoder's int8_mode 1 or 2.

    python -m checkpoint_tools.ckpt_quantization --init_checkpoint out/minilm_fp16/model.ckpt \\
        --quantized_checkpoint out/minilm_int8/model.ckpt --int8_mode 1 \\
        --calib_data ../shared/data/mrpc --calib_task mrpc --vocab_file out/minilm/vocab.txt \\
        --bert_config_file out/minilm/bert_config.json --calib_method percentile --percentile 99.99

int8_mode 1: per-output-channel weight scales, activations per tensor at GEMM inputs, residuals and
LayerNorm in float. int8_mode 2: per-tensor weight scales, and Q/K/V, the softmax output, the
attention-output / intermediate / output GEMM results (one range per output channel) and the
residual path are int8 too (faster on GPUs, a little less accurate).

Activation ranges come from a QAT checkpoint when it has them (NVIDIA's names:
.../{input,aftergemm,kernel}_quantizer/quant_max|quant_min, matmul_{q,k,v,a}_input_quantizer),
otherwise from post-training calibration: --calib_data (a GLUE task directory with --calib_task,
or a SQuAD json), --vocab_file, --bert_config_file, run through the plain-TF encoder in float32
over the real tokens of the first --calib_batches x --calib_batch_size training examples;
--calib_method max (the largest |x|), percentile (--percentile of |x|) or mse (the range with the
least expected squared rounding + clipping error).

The output format is described in fastbert_tf/int8.py and the README. The input is only read. The
output prefix's directory is the tool's own, written whole beside its place and renamed in
(checkpoint_tools/publish.py), with a `checkpoint` state file and copies of the config and
vocabulary used; an output directory that is, contains or lies inside an input, or that exists and
is not this tool's earlier output, is refused (--overwrite replaces only the latter). The config
and the checkpoint must agree: layer count and sizes. A summary of the ranges (min / median / max
over layers) is printed last.
"""
import os

import numpy as np
from absl import app, flags

from checkpoint_tools import cli, ckpt_io, quantization  # cli before anything imports TensorFlow
from checkpoint_tools.cli import DataError
from fastbert_tf import int8
from fastbert_tf.weights import ENCODER_SCOPE, KERNEL_NAMES, check_layer_count, is_training_state

FLAGS = flags.FLAGS
TOOL = "ckpt_quantization"


def define_flags():
    """Command-line flags; defined only when run as a program, so importing defines none."""
    flags.DEFINE_string("init_checkpoint", None, "Input checkpoint prefix (float32, float16 or bfloat16).")
    flags.DEFINE_string("quantized_checkpoint", None, "Output checkpoint prefix.")
    flags.DEFINE_integer("int8_mode", None, "1 or 2.")
    flags.DEFINE_string("bert_config_file", None, "bert_config.json (default: beside the checkpoint).")
    flags.DEFINE_string("calib_data", None, "GLUE task directory or SQuAD json for calibration.")
    flags.DEFINE_string("calib_task", None, "GLUE task of --calib_data: cola, mnli, mrpc or xnli.")
    flags.DEFINE_string("vocab_file", None, "Vocabulary, for calibration.")
    flags.DEFINE_bool("do_lower_case", True, "Lower-case the calibration text.")
    flags.DEFINE_enum("calib_method", "max", ["max", "percentile", "mse"], "How a range is taken from the statistics.")
    flags.DEFINE_float("percentile", 99.99, "For --calib_method percentile.")
    flags.DEFINE_integer("calib_batches", 25, "Calibration batches.")
    flags.DEFINE_integer("calib_batch_size", 8, "Calibration batch size.")
    flags.DEFINE_integer("max_seq_length", 128, "Calibration sequence length.")
    flags.DEFINE_bool("overwrite", False, "Replace this tool's own earlier output directory.")
    cli.define_verbose()


def calibration_batches(calib_data, calib_task, vocab_file, max_seq_length, batch_size, batches,
                        do_lower_case=True):
    """(input_ids, input_mask, segment_ids) batches from the first examples of the data."""
    import tensorflow as tf
    from fastbert_tf import bert_compat
    tf.compat.v1.logging.set_verbosity(max(tf.compat.v1.logging.get_verbosity(), tf.compat.v1.logging.WARN))  # Google's converters log every example
    if not vocab_file or not os.path.isfile(vocab_file):
        raise ValueError(f"calibration needs --vocab_file (got {vocab_file!r})")
    if calib_data.endswith(".json") and not os.path.isfile(calib_data):
        raise ValueError(f"--calib_data {calib_data} does not exist")
    tokenizer = bert_compat.load("tokenization").FullTokenizer(vocab_file, do_lower_case=do_lower_case)
    n = batch_size * batches
    if calib_data.endswith(".json"):
        rs = bert_compat.load("run_squad")
        feats = []
        try:
            examples = rs.read_squad_examples(calib_data, is_training=False)[:n]
        except (ValueError, KeyError, TypeError) as e:
            raise DataError(f"{calib_data}: not a SQuAD v1.1 json file ({type(e).__name__}: {e})") from None
        rs.convert_examples_to_features(examples, tokenizer, max_seq_length, 128, 64, False, feats.append)
        feats = feats[:n]
    else:
        rc = bert_compat.load("run_classifier")
        processors = bert_compat.glue_processors()
        if calib_task not in processors:
            raise ValueError(f"--calib_task must be one of {sorted(processors)} for a GLUE --calib_data")
        proc = processors[calib_task]()
        try:
            examples = bert_compat.read_examples(proc, "train", calib_data)[:n]
        except ValueError as e:
            raise DataError(str(e)) from None
        feats = rc.convert_examples_to_features(examples, proc.get_labels(), max_seq_length, tokenizer)
    if not feats:
        raise DataError(f"no calibration examples in {calib_data}")
    arrays = [np.array([getattr(f, k) for f in feats], np.int32) for k in ("input_ids", "input_mask", "segment_ids")]
    return [tuple(a[i:i + batch_size] for a in arrays) for i in range(0, len(feats), batch_size)]


def calibrate(checkpoint, config, batches, method, percentile):
    """{layer: {activation: amax}} of the float model (plain-TF encoder, float32) over the batches."""
    import tensorflow as tf
    from fastbert_tf import modeling
    model = modeling.BertModel(config, False, floatx="float32", use_fast_op=False)
    reader = tf.train.load_checkpoint(checkpoint)
    try:
        modeling.load_checkpoint(checkpoint, {n: v for n, v in model.variables_by_name.items() if reader.has_tensor(n)})
    except ValueError as e:
        raise DataError(str(e)) from None
    cal = quantization.Calibrator(method, percentile)
    model.observer = cal
    passes = 1 if method == "max" else 2
    for p in range(passes):
        if p == 1:
            cal.start_histograms()
        for ids, mask, seg in batches:
            cal.set_mask(mask)
            model(ids, mask, seg)
    return cal.ranges()


def quantize_checkpoint(init_checkpoint, output, int8_mode, config, calib=None, overwrite=False,
                        calib_method="max", percentile=99.99, inputs=(), copies=()):
    """Writes the quantized checkpoint; calib: a callable returning calibration batches (or None);
    inputs: the other files and directories read (config, vocabulary, calibration data), protected
    like the checkpoint; copies: files copied into the output directory (config, vocabulary).
    Returns (activation ranges {layer: {name: amax}}, kernel scales {layer: {kernel: scales}}).
    ValueError for an unusable output path or flag (checked before anything is read), DataError
    for input that does not fit."""
    import tensorflow as tf
    if int8_mode not in (1, 2):
        raise ValueError(f"--int8_mode must be 1 or 2, got {int8_mode}")
    prefix = ckpt_io.resolve(init_checkpoint)
    inputs = ckpt_io.files(prefix) + list(inputs)
    out = ckpt_io.output(TOOL, output, inputs, overwrite, "--quantized_checkpoint")
    reader, shapes, dtypes = ckpt_io.read(prefix)
    first = f"{ENCODER_SCOPE}layer_0/attention/self/query/kernel"
    if first not in shapes:
        raise DataError(f"{prefix} is not a BERT checkpoint (no '{first}')")
    if reader.has_tensor(int8.INT8_MODE_NAME) or dtypes[first] == tf.int8:
        raise DataError(f"{prefix} is quantized already")
    layers = config.num_hidden_layers
    try:
        check_layer_count(shapes, layers, f"checkpoint {prefix}")
    except ValueError as e:
        raise DataError(str(e)) from None
    for kname, want in ((first, [config.hidden_size, config.hidden_size]),
                        (f"{ENCODER_SCOPE}layer_0/intermediate/dense/kernel", [config.hidden_size, config.intermediate_size])):
        if kname in shapes and list(shapes[kname]) != want:
            raise DataError(f"checkpoint variable '{kname}' has shape {list(shapes[kname])} but the config gives {want} "
                            "(hidden_size, intermediate_size): does --bert_config_file belong to the checkpoint?")
    values = {name: ckpt_io.tensor(reader, prefix, name) for name in shapes
              if not is_training_state(name)}  # every variable read once: a truncated file fails here
    acts, qat_kernels = quantization.qat_ranges(reader, layers)
    missing = quantization.missing_ranges(acts, int8_mode)
    if missing:
        if calib is None:
            layer, name = missing[0]
            raise ValueError(f"{prefix} has no range for '{name}' (layer {layer}) and {len(missing) - 1} "
                             "more: give calibration data (--calib_data, --vocab_file)")
        calibrated = calibrate(prefix, config, calib(), calib_method, percentile)
        for layer in range(layers):
            for name, amax in calibrated.get(layer, {}).items():
                acts[layer].setdefault(name, amax)
    hidden, inter = config.hidden_size, config.intermediate_size
    for layer in range(layers):  # mode 1 never reads the mode-2-only ranges; keep them well-defined
        for name in int8.QUANT_ACTIVATIONS:
            acts[layer].setdefault(name, 1.0)
            if int8_mode == 2 and name in int8.PER_CHANNEL:  # a QAT range is per tensor
                n = int8.channels(name, hidden, inter)
                acts[layer][name] = np.broadcast_to(np.asarray(acts[layer][name], np.float32), (n,)).copy()

    values = {n: v for n, v in values.items() if "_quantizer/" not in n}  # QAT quantizers are consumed here
    kernel_scales = {}
    for layer in range(layers):
        kernel_scales[layer] = {}
        base = f"{ENCODER_SCOPE}layer_{layer}/"
        for kname in KERNEL_NAMES:
            kernel = np.asarray(values[base + kname], np.float32)
            q, scales = quantization.quantize_kernel(kernel, int8_mode, qat_kernels[layer][kname])
            values[base + kname] = q
            values[base + kname + "_scale"] = scales
            kernel_scales[layer][kname] = scales
        for name in int8.QUANT_ACTIVATIONS:
            amax = np.asarray(acts[layer][name], np.float32)
            values[base + f"quant/{name}_amax"] = amax if int8_mode == 2 and name in int8.PER_CHANNEL \
                else np.float32(np.max(amax))
    values[int8.INT8_MODE_NAME] = np.int32(int8_mode)
    with out:
        ckpt_io.write(values, out, os.path.basename(output))
        for path in copies:
            ckpt_io.copy_into(out, path, os.path.basename(path))
        out.publish(inputs)
    return acts, kernel_scales


def summary(acts, kernel_scales, int8_mode):
    names = int8.MODE1_ACTIVATIONS if int8_mode == 1 else int8.QUANT_ACTIVATIONS
    lines = [f"{'range':36s} {'min':>10s} {'median':>10s} {'max':>10s}"]
    for name in names:
        v = np.concatenate([np.asarray(acts[layer][name], np.float32).reshape(-1) for layer in sorted(acts)])
        lines.append(f"{name + '_amax':36s} {v.min():10.4g} {np.median(v):10.4g} {v.max():10.4g}")
    for kname in KERNEL_NAMES:
        v = np.concatenate([kernel_scales[layer][kname] for layer in sorted(kernel_scales)]) * 127
        lines.append(f"{kname + ' amax':36s} {v.min():10.4g} {np.median(v):10.4g} {v.max():10.4g}")
    return "\n".join(lines)


def main(argv):
    del argv
    from fastbert_tf import modeling
    for name in ("init_checkpoint", "quantized_checkpoint", "int8_mode"):
        if getattr(FLAGS, name) is None:
            raise app.UsageError(f"--{name} is required")
    if not os.path.exists(FLAGS.init_checkpoint) and not os.path.exists(FLAGS.init_checkpoint + ".index"):
        raise app.UsageError(f"--init_checkpoint {FLAGS.init_checkpoint}: neither a checkpoint prefix (no .index "
                             "file) nor a directory")
    config_file = FLAGS.bert_config_file or int8.checkpoint_dir_config(ckpt_io.resolve(FLAGS.init_checkpoint))
    if not config_file:
        raise app.UsageError("--bert_config_file is required (none beside the checkpoint)")
    if not os.path.isfile(config_file):
        raise app.UsageError(f"--bert_config_file {config_file} does not exist")
    calib = None
    if FLAGS.calib_data:
        if not os.path.exists(FLAGS.calib_data):
            raise app.UsageError(f"--calib_data {FLAGS.calib_data} does not exist")
        if not FLAGS.vocab_file or not os.path.isfile(FLAGS.vocab_file):
            raise app.UsageError(f"--calib_data needs --vocab_file (got {FLAGS.vocab_file!r})")
        if FLAGS.calib_batches < 1 or FLAGS.calib_batch_size < 1 or FLAGS.max_seq_length < 3:
            raise app.UsageError("--calib_batches and --calib_batch_size must be >= 1, --max_seq_length >= 3")
        if not 0 < FLAGS.percentile <= 100:
            raise app.UsageError(f"--percentile must be in (0, 100], got {FLAGS.percentile}")
        calib = lambda: calibration_batches(  # noqa: E731
            FLAGS.calib_data, FLAGS.calib_task, FLAGS.vocab_file, FLAGS.max_seq_length,
            FLAGS.calib_batch_size, FLAGS.calib_batches, FLAGS.do_lower_case)
    try:
        config = modeling.BertConfig.from_json_file(config_file)
    except ValueError as e:
        raise DataError(str(e)) from None
    if FLAGS.max_seq_length > config.max_position_embeddings:
        raise app.UsageError(f"--max_seq_length {FLAGS.max_seq_length} is above max_position_embeddings "
                             f"{config.max_position_embeddings} of {config_file}")
    vocab = FLAGS.vocab_file if FLAGS.vocab_file and os.path.isfile(FLAGS.vocab_file) else None
    try:
        acts, kscales = quantize_checkpoint(FLAGS.init_checkpoint, FLAGS.quantized_checkpoint, FLAGS.int8_mode,
                                            config, calib, FLAGS.overwrite, FLAGS.calib_method, FLAGS.percentile,
                                            inputs=[config_file, vocab, FLAGS.calib_data],
                                            copies=[config_file, vocab])
    except DataError:
        raise
    except ValueError as e:  # the output path, --int8_mode, --calib_task, missing calibration flags
        raise app.UsageError(str(e))
    print(f"wrote {FLAGS.quantized_checkpoint} (int8_mode {FLAGS.int8_mode})")
    print(summary(acts, kscales, FLAGS.int8_mode))


if __name__ == "__main__":
    define_flags()
    cli.run(main)
