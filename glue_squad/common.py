"""What run_classifier_wrap and run_squad_wrap share: flags, input checks, the model, training."""
from checkpoint_tools import cli  # first: quiets TensorFlow's start-up lines (unless --verbose)
from checkpoint_tools import ckpt_io

import contextlib
import json
import os
import time

import numpy as np
import tensorflow as tf
from absl import app, flags
from tqdm import tqdm

from fastbert_tf import int8, modeling
from fastbert_tf.weights import ENCODER_SCOPE, open_checkpoint

FLAGS = flags.FLAGS


def define_flags(task_flags):
    """Google's common flags plus fastbert's; task_flags() defines the task's own."""
    flags.DEFINE_string("bert_config_file", None, "bert_config.json of the model.")
    flags.DEFINE_string("vocab_file", None, "WordPiece vocabulary of the model.")
    flags.DEFINE_string("output_dir", None, "Where results (and trained checkpoints) go.")
    flags.DEFINE_string("init_checkpoint", None, "Google-format checkpoint to start from.")
    flags.DEFINE_bool("do_lower_case", True, "Lower-case the input (uncased models).")
    flags.DEFINE_integer("max_seq_length", 128, "Padded sequence length.")
    flags.DEFINE_bool("do_train", False, "Fine-tune (with the plain-TF encoder).")
    flags.DEFINE_bool("do_predict", False, "Predict on the test (or predict) file.")
    flags.DEFINE_integer("train_batch_size", 32, "Training batch size.")
    flags.DEFINE_integer("predict_batch_size", 8, "Prediction batch size.")
    flags.DEFINE_float("learning_rate", 5e-5, "Peak learning rate of AdamWeightDecay.")
    flags.DEFINE_float("num_train_epochs", 3.0, "Training epochs.")
    flags.DEFINE_float("warmup_proportion", 0.1, "Share of steps with a linear learning-rate warmup.")
    flags.DEFINE_integer("save_checkpoints_steps", 1000, "Checkpoint every this many steps (and at the end).")
    flags.DEFINE_integer("max_train_examples", 0, "Use only the first N training examples (0: all).")
    flags.DEFINE_integer("seed", 12345, "Random seed for head initialization and shuffling.")
    # fastbert_tf
    flags.DEFINE_enum("floatx", "float32", ["float32", "float16", "bfloat16"], "Inference dtype.")
    flags.DEFINE_bool("remove_padding", False, "Run the encoder on the real tokens only.")
    flags.DEFINE_integer("int8_mode", 0, "0: float; 1 or 2: INT8 (needs a quantized checkpoint).")
    flags.DEFINE_bool("use_fast_op", True, "Evaluate with FastBertEncoder (False: the plain-TF encoder).")
    flags.DEFINE_bool("allow_unused_variables", False, "Load a checkpoint whose bert/ variables the config does not "
                      "all use (e.g. more layers than num_hidden_layers). Without it that is an error.")
    cli.define_verbose()
    flags.DEFINE_enum("strategy", "default", ["default", "mirrored", "multi_worker"],
                      "Inference over devices with tf.distribute: mirrored (the GPUs of this host, or "
                      "--num_cpu_replicas logical CPUs), multi_worker (the hosts of TF_CONFIG). Each global batch "
                      "is split into contiguous per-replica slices; results come back in input order.")
    flags.DEFINE_integer("num_gpus", 0, "--strategy mirrored: GPUs to mirror over (0: all visible).")
    flags.DEFINE_integer("num_cpu_replicas", 0, "--strategy mirrored on the CPU: split it into this many logical "
                         "devices, one replica each (0: use GPUs).")
    flags.DEFINE_bool("warmup", True, "Before the timed evaluation, call the model (untimed) on every shape it will "
                      "see; with --remove_padding on a GPU, on every row bucket (fastbert_tf.row_buckets), as a "
                      "server warms up.")
    task_flags()


def make_strategy():
    """The --strategy, created before anything else touches TensorFlow's devices (a logical CPU split
    and MultiWorkerMirroredStrategy's collective server need that); None for the default."""
    if FLAGS.strategy == "default":
        require(not FLAGS.num_gpus and not FLAGS.num_cpu_replicas,
                "--num_gpus and --num_cpu_replicas need --strategy mirrored")
        return None
    if FLAGS.strategy == "multi_worker":
        require(not FLAGS.num_gpus and not FLAGS.num_cpu_replicas,
                "--strategy multi_worker takes its devices from TF_CONFIG, not --num_gpus/--num_cpu_replicas")
        try:
            tf_config = json.loads(os.environ.get("TF_CONFIG", ""))
            cluster, task = tf_config["cluster"], tf_config["task"]
            assert task["type"] in cluster and 0 <= int(task["index"]) < len(cluster[task["type"]])
        except (ValueError, KeyError, TypeError, AssertionError):
            raise app.UsageError("--strategy multi_worker needs TF_CONFIG: JSON with 'cluster' (e.g. "
                                 "{\"worker\": [\"host:port\", ...]}) and this process's 'task' "
                                 "({\"type\": \"worker\", \"index\": i})")
        return tf.distribute.MultiWorkerMirroredStrategy()
    require(FLAGS.num_gpus >= 0 and FLAGS.num_cpu_replicas >= 0, "--num_gpus and --num_cpu_replicas must be >= 0")
    if FLAGS.num_cpu_replicas:
        require(not FLAGS.num_gpus, "--num_gpus and --num_cpu_replicas exclude each other")
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(FLAGS.num_cpu_replicas)])
        return tf.distribute.MirroredStrategy([f"/cpu:{i}" for i in range(FLAGS.num_cpu_replicas)],
                                              cross_device_ops=tf.distribute.ReductionToOneDevice())
    gpus = tf.config.list_physical_devices("GPU")
    require(gpus, "--strategy mirrored: no GPU visible (--num_cpu_replicas N mirrors over the CPU)")
    n = FLAGS.num_gpus or len(gpus)
    require(n <= len(gpus), f"--num_gpus {n}: only {len(gpus)} GPU(s) visible")
    return tf.distribute.MirroredStrategy([f"/gpu:{i}" for i in range(n)])


def strategy_scope(strategy):
    """Where the model's variables are created: mirrored on every replica under a strategy."""
    return strategy.scope() if strategy is not None else contextlib.nullcontext()


def is_chief(strategy):
    """Whether this process writes the results (multi_worker: worker 0 only; the others compute)."""
    if strategy is None or FLAGS.strategy != "multi_worker":
        return True
    resolver = strategy.cluster_resolver
    return resolver.task_type in ("chief", None) or (resolver.task_type == "worker" and resolver.task_id == 0
                                                     and "chief" not in resolver.cluster_spec().as_dict())


def distributed(step, strategy):
    """step(input_ids, input_mask, segment_ids) over the strategy's replicas: a global batch is cut
    into contiguous slices, one per replica (padded with copies of its last row to a multiple of
    the replica count, so none is empty), and the outputs are gathered back in input order (the
    padding dropped). Every worker of multi_worker runs the same batches: each computes its
    replicas' slices, and the gather brings the whole batch to all of them."""
    if strategy is None:
        return step
    n = strategy.num_replicas_in_sync

    def fn(*batch):
        batch = [np.asarray(b) for b in batch]
        rows = len(batch[0])
        per = max(1, -(-rows // n))
        batch = [np.concatenate([b, np.repeat(b[-1:], per * n - rows, axis=0)]) if per * n > rows else b
                 for b in batch]
        args = tuple(strategy.experimental_distribute_values_from_function(
            lambda ctx, b=b: tf.constant(b[ctx.replica_id_in_sync_group * per:(ctx.replica_id_in_sync_group + 1) * per]))
            for b in batch)
        out = strategy.run(lambda *a: step(*a), args=args)  # a tf.function itself would get the PerReplica
        return tf.nest.map_structure(lambda t: strategy.gather(t, axis=0)[:rows], out)

    return fn


def require(condition, message):
    if not condition:
        raise app.UsageError(message)


def check_common_flags():
    for name in ("bert_config_file", "vocab_file", "output_dir"):
        require(getattr(FLAGS, name), f"--{name} is required")
    require(os.path.isfile(FLAGS.vocab_file), f"--vocab_file {FLAGS.vocab_file} does not exist")
    require(os.path.isfile(FLAGS.bert_config_file), f"--bert_config_file {FLAGS.bert_config_file} does not exist")
    require(FLAGS.int8_mode in (0, 1, 2), f"--int8_mode must be 0, 1 or 2, got {FLAGS.int8_mode}")
    if FLAGS.init_checkpoint:
        require(tf.io.gfile.exists(FLAGS.init_checkpoint + ".index") or tf.io.gfile.isdir(FLAGS.init_checkpoint),
                f"--init_checkpoint {FLAGS.init_checkpoint} does not exist (give the prefix, e.g. .../bert_model.ckpt)")
    config = modeling.BertConfig.from_json_file(FLAGS.bert_config_file)  # ValueError names the file: exit 1
    require(FLAGS.max_seq_length <= config.max_position_embeddings,
            f"--max_seq_length {FLAGS.max_seq_length} is above the model's max_position_embeddings "
            f"{config.max_position_embeddings}")
    require(FLAGS.max_seq_length >= 3, "--max_seq_length must be at least 3")
    os.makedirs(FLAGS.output_dir, exist_ok=True)
    return config


def resolve_checkpoint(path):
    """A checkpoint prefix, or the one a directory's `checkpoint` state file names (DataError if none)."""
    return ckpt_io.resolve(path)


def restore(path, variables, loaded_elsewhere=()):
    """Loads a Google-named checkpoint into {name: variable}; ValueError (exit 1) for what does
    not fit, both ways (modeling.load_checkpoint)."""
    unused = modeling.load_checkpoint(resolve_checkpoint(path), variables, allow_unused=FLAGS.allow_unused_variables,
                                      loaded_elsewhere=loaded_elsewhere)
    if unused:
        tf.get_logger().info("checkpoint variables not used: %s", ", ".join(unused))
    return unused


def restore_inference(path, bert, variables):
    """The inference model's weights: with --int8_mode the encoder from the quantized checkpoint
    (int8.load_into_model), the rest (embeddings, pooler, head) by name."""
    if FLAGS.int8_mode:
        int8.load_into_model(resolve_checkpoint(path), bert, FLAGS.int8_mode)
        variables = {n: v for n, v in variables.items() if not n.startswith(ENCODER_SCOPE)}
        return restore(path, variables, loaded_elsewhere=(ENCODER_SCOPE,))
    return restore(path, variables)


def restore_present(path, variables):
    """Before fine-tuning: the variables the checkpoint has (a fresh task head may be missing)."""
    reader, _, _ = open_checkpoint(resolve_checkpoint(path))
    return restore(path, {n: v for n, v in variables.items() if reader.has_tensor(n)})


def inference_model(config, is_training=False):
    return modeling.BertModel(config, is_training=is_training, floatx=FLAGS.floatx,
                              remove_padding=FLAGS.remove_padding, int8_mode=FLAGS.int8_mode,
                              use_fast_op=FLAGS.use_fast_op and not is_training)


class AdamWeightDecay:
    """Google BERT's optimizer: Adam without bias correction, decoupled weight decay (not on
    LayerNorm or biases), linear warmup then linear decay to zero, gradients clipped to norm 1."""

    def __init__(self, variables, learning_rate, num_train_steps, num_warmup_steps, weight_decay_rate=0.01,
                 beta_1=0.9, beta_2=0.999, epsilon=1e-6):
        self.variables = list(variables)
        self.lr, self.steps, self.warmup = learning_rate, max(num_train_steps, 1), num_warmup_steps
        self.wd, self.b1, self.b2, self.eps = weight_decay_rate, beta_1, beta_2, epsilon
        self.m = [tf.Variable(tf.zeros_like(v), trainable=False) for v in self.variables]
        self.v = [tf.Variable(tf.zeros_like(v), trainable=False) for v in self.variables]
        self.decay = [not any(s in v.name for s in ("LayerNorm", "layer_norm", "bias")) for v in self.variables]
        self.step = tf.Variable(0, dtype=tf.int64, trainable=False)

    def learning_rate(self):
        step = tf.cast(self.step, tf.float32)
        decayed = self.lr * tf.maximum(0.0, 1.0 - step / self.steps)
        if self.warmup:
            return tf.where(step < self.warmup, self.lr * step / self.warmup, decayed)
        return decayed

    def apply(self, grads):
        grads, _ = tf.clip_by_global_norm(grads, 1.0)
        lr = self.learning_rate()
        for g, v, m, s, decay in zip(grads, self.variables, self.m, self.v, self.decay):
            if g is None:  # a variable the loss does not reach
                continue
            g = tf.convert_to_tensor(g)  # embedding gradients arrive as IndexedSlices
            m.assign(self.b1 * m + (1.0 - self.b1) * g)
            s.assign(self.b2 * s + (1.0 - self.b2) * tf.square(g))
            update = m / (tf.sqrt(s) + self.eps)
            if decay:
                update += self.wd * v
            v.assign_sub(lr * update)
        self.step.assign_add(1)


def train(model, head, loss_fn, dataset, num_steps, output_dir, prefix="model.ckpt"):
    """Fine-tunes model + head (dict of variables) with AdamWeightDecay; writes Google-named
    checkpoints. dataset yields the inputs of loss_fn(training=True); returns the last checkpoint."""
    variables = modeling.model_variables(model, head)
    trainable = [v for v in variables.values() if v.trainable]
    warmup = int(num_steps * FLAGS.warmup_proportion)
    opt = AdamWeightDecay(trainable, FLAGS.learning_rate, num_steps, warmup)

    @tf.function
    def step(*batch):
        with tf.GradientTape() as tape:
            loss = loss_fn(*batch, training=True)
        opt.apply(tape.gradient(loss, trainable))
        return loss

    path = None
    progress = tqdm(total=num_steps, desc="train", unit="step")
    losses = []
    for i, batch in enumerate(dataset.take(num_steps)):
        losses.append(float(step(*batch)))
        progress.update(1)
        progress.set_postfix(loss=f"{np.mean(losses[-20:]):.4f}")
        if (i + 1) % FLAGS.save_checkpoints_steps == 0 and i + 1 < num_steps:
            path = modeling.save_checkpoint(variables, os.path.join(output_dir, f"{prefix}-{i + 1}"))
    progress.close()
    path = modeling.save_checkpoint(variables, os.path.join(output_dir, f"{prefix}-{num_steps}"))
    return path, losses


def warm_up(fn, num_examples, batch_size):
    """Calls fn(input_ids, input_mask, segment_ids) twice on every batch shape of an evaluation of
    num_examples (the full batches and the last one): with --remove_padding on a GPU, once per row
    bucket of B * max_seq_length tokens (the GPU runner captures a CUDA graph on a shape's second
    call). Returns (calls, seconds)."""
    from fastbert_tf.ops import warmup_lengths
    if not FLAGS.warmup or not FLAGS.use_fast_op or num_examples == 0:
        return 0, 0.0
    seq = FLAGS.max_seq_length
    sizes = {min(batch_size, num_examples)} | ({num_examples % batch_size} if num_examples % batch_size else set())
    buckets = FLAGS.remove_padding and bool(tf.config.list_physical_devices("GPU"))
    start, calls = time.perf_counter(), 0
    for b in sorted(sizes, reverse=True):
        for lengths in warmup_lengths(b, seq, every_bucket=buckets):
            mask = (np.arange(seq)[None, :] < lengths[:, None]).astype(np.int32)
            ids = np.where(mask > 0, 100, 0).astype(np.int32)
            for _ in range(2):
                fn(tf.constant(ids), tf.constant(mask), tf.constant(np.zeros_like(mask)))
                calls += 1
    return calls, time.perf_counter() - start


def timed_batches(fn, batches, desc):
    """Runs fn over batches (the first call traces and warms up, untimed); returns outputs and ms."""
    outputs, elapsed = [], 0.0
    for i, batch in enumerate(tqdm(batches, desc=desc, unit="batch")):
        if i == 0:
            fn(*batch)  # trace + warm-up
        start = time.perf_counter()
        out = fn(*batch)
        out = [o.numpy() for o in out] if isinstance(out, (tuple, list)) else out.numpy()
        elapsed += time.perf_counter() - start
        outputs.append(out)
    return outputs, elapsed * 1e3


def write_results(path, results):
    with open(path, "w") as f:
        for k in sorted(results):
            f.write(f"{k} = {results[k]}\n")
