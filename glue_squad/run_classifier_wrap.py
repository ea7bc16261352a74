"""Google BERT's run_classifier on TensorFlow 2.21, evaluating with FastBertEncoder.

    python -m glue_squad.run_classifier_wrap --task_name mrpc --data_dir ../shared/data/mrpc \\
        --vocab_file M/vocab.txt --bert_config_file M/bert_config.json --init_checkpoint M/bert_model.ckpt \\
        --max_seq_length 128 --eval_batch_size 32 --output_dir out/mrpc --do_eval \\
        --floatx float16 --remove_padding

Google's flags plus --floatx, --remove_padding, --int8_mode, --use_fast_op. Examples are read and
converted by Google's own processors (through fastbert_tf.bert_compat); evaluation is a tf.function
over a tf.data pipeline. --do_eval writes eval_results.txt (eval_accuracy, eval_f1, eval_loss,
ms_per_example) and eval_predictions.txt; --do_predict writes test_results.tsv (class
probabilities per line); --do_train fine-tunes with the plain-TF encoder (Google's AdamWeightDecay,
warmup) and writes Google-named checkpoints that the evaluation then uses.
"""
from checkpoint_tools import cli  # first: quiets TensorFlow's start-up lines (unless --verbose)

import os

import numpy as np
import tensorflow as tf
from absl import app, flags

from fastbert_tf import bert_compat, modeling
from glue_squad import common

FLAGS = flags.FLAGS


def _task_flags():
    flags.DEFINE_string("task_name", None, "cola, mnli, mrpc or xnli.")
    flags.DEFINE_string("data_dir", None, "Directory with the task's .tsv files.")
    flags.DEFINE_bool("do_eval", False, "Evaluate on the dev set.")
    flags.DEFINE_integer("eval_batch_size", 8, "Evaluation batch size.")


common.define_flags(_task_flags)
flags.adopt_module_key_flags(common)  # --help lists the shared flags too


def features(examples, label_list, tokenizer):
    rc = bert_compat.load("run_classifier")
    feats = rc.convert_examples_to_features(examples, label_list, FLAGS.max_seq_length, tokenizer)
    return (np.array([f.input_ids for f in feats], np.int32), np.array([f.input_mask for f in feats], np.int32),
            np.array([f.segment_ids for f in feats], np.int32), np.array([f.label_id for f in feats], np.int32))


class Classifier(tf.Module):
    """BertModel + Google's classification head (output_weights [num_labels, H], output_bias)."""

    def __init__(self, config, num_labels, is_training):
        super().__init__()
        self.bert = (modeling.BertModel(config, is_training=True, use_fast_op=False) if is_training
                     else common.inference_model(config))
        dtype = self.bert.dtype
        self.output_weights = modeling.head_variable("output_weights", [num_labels, config.hidden_size], dtype)
        self.output_bias = modeling.head_variable("output_bias", [num_labels], dtype, zeros=True)
        self.head = {"output_weights": self.output_weights, "output_bias": self.output_bias}
        self.dropout = config.hidden_dropout_prob

    def logits(self, input_ids, input_mask, segment_ids, training=False):
        pooled = self.bert(input_ids, input_mask, segment_ids, training=training)
        if training:
            pooled = tf.nn.dropout(pooled, rate=self.dropout)
        logits = tf.matmul(pooled, self.output_weights, transpose_b=True) + self.output_bias
        return tf.cast(logits, tf.float32)

    def loss(self, input_ids, input_mask, segment_ids, labels, training=False):
        logits = self.logits(input_ids, input_mask, segment_ids, training)
        return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits))

    def variables_by_name(self):
        return modeling.model_variables(self.bert, self.head)


def f1_score(labels, preds, num_labels):
    """Binary F1 of class 1 for two-class tasks, macro F1 otherwise."""
    def f1(c):
        tp = np.sum((preds == c) & (labels == c))
        fp = np.sum((preds == c) & (labels != c))
        fn = np.sum((preds != c) & (labels == c))
        return 0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn)
    return f1(1) if num_labels == 2 else float(np.mean([f1(c) for c in range(num_labels)]))


def evaluate(model, data, batch_size, strategy=None):
    """(predictions, probabilities, eval_loss, ms) over (ids, mask, segments, labels), on the
    replicas of strategy when given (common.distributed)."""
    ids, mask, seg, labels = data
    spec = tf.TensorSpec([None, FLAGS.max_seq_length], tf.int32)

    @tf.function(input_signature=[spec, spec, spec])
    def step(i, m, s):
        return tf.nn.softmax(model.logits(i, m, s))

    step = common.distributed(step, strategy)
    batches = tf.data.Dataset.from_tensor_slices((ids, mask, seg)).batch(batch_size)
    calls, seconds = common.warm_up(step, len(ids), batch_size)
    if calls:
        print(f"warm-up: {calls} untimed calls, {seconds:.2f} s")
    probs, ms = common.timed_batches(step, batches, "eval")
    probs = np.concatenate(probs) if probs else np.zeros((0, 1))
    loss = float(np.mean(-np.log(np.maximum(probs[np.arange(len(labels)), labels], 1e-30)))) if len(labels) else 0.0
    return probs.argmax(-1), probs, loss, ms


def run_train(config, processor, label_list, tokenizer):
    examples = bert_compat.read_examples(processor, "train", FLAGS.data_dir)
    if FLAGS.max_train_examples:
        examples = examples[:FLAGS.max_train_examples]
    common.require(examples, "no training examples")
    data = features(examples, label_list, tokenizer)
    steps = max(1, int(len(examples) / FLAGS.train_batch_size * FLAGS.num_train_epochs))
    tf.random.set_seed(FLAGS.seed)
    model = Classifier(config, len(label_list), is_training=True)
    if FLAGS.init_checkpoint:  # the encoder from the checkpoint; the head too if it has one
        common.restore_present(FLAGS.init_checkpoint, model.variables_by_name())
    dataset = (tf.data.Dataset.from_tensor_slices(data).repeat()
               .shuffle(min(len(examples), 10000), seed=FLAGS.seed).batch(FLAGS.train_batch_size, drop_remainder=True))
    path, losses = common.train(model.bert, model.head, model.loss, dataset, steps, FLAGS.output_dir)
    print(f"trained {steps} steps; loss {np.mean(losses[:10]):.4f} (first 10) -> {np.mean(losses[-10:]):.4f} "
          f"(last 10); checkpoint {path}")
    return path


def build_inference_model(config, num_labels, checkpoint, strategy=None):
    common.require(checkpoint, "--init_checkpoint is required for --do_eval/--do_predict without --do_train")
    with common.strategy_scope(strategy):
        model = Classifier(config, num_labels, is_training=False)
    common.restore_inference(checkpoint, model.bert, model.variables_by_name())
    return model


def main(argv):
    del argv
    strategy = common.make_strategy()
    common.require(strategy is None or not FLAGS.do_train, "--do_train runs on one device: use --strategy default")
    config = common.check_common_flags()
    common.require(FLAGS.task_name, "--task_name is required")
    common.require(FLAGS.data_dir and os.path.isdir(FLAGS.data_dir), f"--data_dir {FLAGS.data_dir} is not a directory")
    common.require(FLAGS.do_train or FLAGS.do_eval or FLAGS.do_predict,
                   "at least one of --do_train, --do_eval, --do_predict")
    task = FLAGS.task_name.lower()
    processors = bert_compat.glue_processors()
    common.require(task in processors, f"--task_name {FLAGS.task_name}: expected one of {sorted(processors)}")
    processor = processors[task]()
    label_list = processor.get_labels()
    tok = bert_compat.load("tokenization")
    tokenizer = tok.FullTokenizer(vocab_file=FLAGS.vocab_file, do_lower_case=FLAGS.do_lower_case)
    tf.compat.v1.logging.set_verbosity(max(tf.compat.v1.logging.get_verbosity(), tf.compat.v1.logging.WARN))  # Google's converters log every example

    checkpoint = FLAGS.init_checkpoint
    if FLAGS.do_train:
        checkpoint = run_train(config, processor, label_list, tokenizer)
    model = None
    if FLAGS.do_eval or FLAGS.do_predict:
        model = build_inference_model(config, len(label_list), checkpoint, strategy)
    if FLAGS.do_eval:
        examples = bert_compat.read_examples(processor, "dev", FLAGS.data_dir)
        data = features(examples, label_list, tokenizer)
        preds, _, loss, ms = evaluate(model, data, FLAGS.eval_batch_size, strategy)
        labels = data[3]
        results = {"eval_accuracy": float(np.mean(preds == labels)) if len(labels) else 0.0,
                   "eval_f1": f1_score(labels, preds, len(label_list)), "eval_loss": loss,
                   "ms_per_example": ms / max(len(labels), 1), "examples": len(labels), "floatx": FLAGS.floatx,
                   "remove_padding": FLAGS.remove_padding, "int8_mode": FLAGS.int8_mode,
                   "use_fast_op": FLAGS.use_fast_op, "strategy": FLAGS.strategy,
                   "replicas": strategy.num_replicas_in_sync if strategy else 1}
        if common.is_chief(strategy):
            common.write_results(os.path.join(FLAGS.output_dir, "eval_results.txt"), results)
            np.savetxt(os.path.join(FLAGS.output_dir, "eval_predictions.txt"), preds, fmt="%d")
        for k in sorted(results):
            print(f"  {k} = {results[k]}")
    if FLAGS.do_predict:
        examples = bert_compat.read_examples(processor, "test", FLAGS.data_dir)
        data = features(examples, label_list, tokenizer)
        _, probs, _, _ = evaluate(model, data, FLAGS.predict_batch_size, strategy)
        if common.is_chief(strategy):
            with open(os.path.join(FLAGS.output_dir, "test_results.tsv"), "w") as f:
                for row in probs:
                    f.write("\t".join(str(p) for p in row) + "\n")
        print(f"wrote {len(probs)} predictions to {os.path.join(FLAGS.output_dir, 'test_results.tsv')}")


if __name__ == "__main__":
    cli.run(main)
