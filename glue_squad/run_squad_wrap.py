"""Google BERT's run_squad on TensorFlow 2.21, predicting with FastBertEncoder.

    python -m glue_squad.run_squad_wrap --predict_file dev-v1.1.json --vocab_file M/vocab.txt \\
        --bert_config_file M/bert_config.json --init_checkpoint M/model.ckpt --do_predict \\
        --output_dir out/squad --floatx float16 --remove_padding

Google's SQuAD flags plus --floatx, --remove_padding, --int8_mode, --use_fast_op. Reading the
examples, turning them into features (doc_stride windows) and writing predictions.json /
nbest_predictions.json are Google's own code (through fastbert_tf.bert_compat); the model's start
and end logits are cut to each feature's real length before Google's write_predictions sees them.
--do_train fine-tunes with the plain-TF encoder (loss: mean of the start and end cross-entropies).
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
    flags.DEFINE_string("train_file", None, "SQuAD json for training.")
    flags.DEFINE_string("predict_file", None, "SQuAD json to predict on.")
    flags.DEFINE_integer("doc_stride", 128, "Stride between windows of a long document.")
    flags.DEFINE_integer("max_query_length", 64, "Question tokens kept.")
    flags.DEFINE_integer("n_best_size", 20, "Candidates per question in nbest_predictions.json.")
    flags.DEFINE_integer("max_answer_length", 30, "Longest answer, in tokens.")
    flags.DEFINE_bool("verbose_logging", False, "Google's alignment warnings.")
    flags.DEFINE_bool("version_2_with_negative", False, "SQuAD 2.0 (questions may have no answer).")
    flags.DEFINE_float("null_score_diff_threshold", 0.0, "SQuAD 2.0: predict no answer above this margin.")


common.define_flags(_task_flags)
flags.adopt_module_key_flags(common)  # --help lists the shared flags too


def squad_module():
    """Google's run_squad, with its private flags set from ours."""
    rs = bert_compat.load("run_squad")
    for name in ("version_2_with_negative", "null_score_diff_threshold", "verbose_logging"):
        setattr(rs.FLAGS, name, getattr(FLAGS, name))
    return rs


class QAModel(tf.Module):
    """BertModel + Google's SQuAD head (cls/squad/output_weights [2, H], cls/squad/output_bias)."""

    def __init__(self, config, is_training):
        super().__init__()
        self.bert = (modeling.BertModel(config, is_training=True, use_fast_op=False) if is_training
                     else common.inference_model(config))
        dtype = self.bert.dtype
        self.head = {"cls/squad/output_weights": modeling.head_variable("cls/squad/output_weights",
                                                                        [2, config.hidden_size], dtype),
                     "cls/squad/output_bias": modeling.head_variable("cls/squad/output_bias", [2], dtype, zeros=True)}

    def logits(self, input_ids, input_mask, segment_ids, training=False):
        self.bert(input_ids, input_mask, segment_ids, training=training)
        seq = self.bert.get_sequence_output()
        logits = tf.einsum("bsh,kh->bsk", seq, self.head["cls/squad/output_weights"]) + self.head["cls/squad/output_bias"]
        logits = tf.cast(logits, tf.float32)
        return logits[:, :, 0], logits[:, :, 1]

    def loss(self, input_ids, input_mask, segment_ids, start_positions, end_positions, training=False):
        start, end = self.logits(input_ids, input_mask, segment_ids, training)
        ce = tf.nn.sparse_softmax_cross_entropy_with_logits
        return (tf.reduce_mean(ce(start_positions, start)) + tf.reduce_mean(ce(end_positions, end))) / 2.0

    def variables_by_name(self):
        return modeling.model_variables(self.bert, self.head)


def read_features(path, tokenizer, is_training):
    rs = squad_module()
    if not os.path.isfile(path):
        raise app.UsageError(f"{path} does not exist")
    try:
        examples = rs.read_squad_examples(path, is_training=is_training)
    except (ValueError, KeyError, TypeError, IndexError) as e:
        raise cli.DataError(f"{path} is not a SQuAD v1.1 json file ({type(e).__name__}: {e})") from None
    feats = []
    rs.convert_examples_to_features(examples, tokenizer, FLAGS.max_seq_length, FLAGS.doc_stride,
                                    FLAGS.max_query_length, is_training, feats.append)
    return examples, feats


def arrays(feats, is_training):
    out = [np.array([getattr(f, k) for f in feats], np.int32) for k in ("input_ids", "input_mask", "segment_ids")]
    if is_training:
        out += [np.array([f.start_position for f in feats], np.int32), np.array([f.end_position for f in feats], np.int32)]
    return tuple(out)


def predict(model, examples, feats, output_dir, prefix="", strategy=None):
    """Runs the model on the features (on strategy's replicas when given) and writes Google's
    prediction files (the chief only); returns their paths."""
    rs = squad_module()
    spec = tf.TensorSpec([None, FLAGS.max_seq_length], tf.int32)

    @tf.function(input_signature=[spec, spec, spec])
    def step(i, m, s):
        return model.logits(i, m, s)

    step = common.distributed(step, strategy)
    batches = tf.data.Dataset.from_tensor_slices(arrays(feats, False)).batch(FLAGS.predict_batch_size)
    calls, seconds = common.warm_up(step, len(feats), FLAGS.predict_batch_size)
    if calls:
        print(f"warm-up: {calls} untimed calls, {seconds:.2f} s")
    outputs, ms = common.timed_batches(step, batches, "predict")
    starts = np.concatenate([o[0] for o in outputs]) if outputs else np.zeros((0, FLAGS.max_seq_length))
    ends = np.concatenate([o[1] for o in outputs]) if outputs else np.zeros((0, FLAGS.max_seq_length))
    results = []
    for f, s, e in zip(feats, starts, ends):
        n = len(f.tokens)  # the real tokens only: padded positions never enter the n-best search
        results.append(rs.RawResult(unique_id=f.unique_id, start_logits=[float(x) for x in s[:n]],
                                    end_logits=[float(x) for x in e[:n]]))
    paths = [os.path.join(output_dir, prefix + name) for name in
             ("predictions.json", "nbest_predictions.json", "null_odds.json")]
    if not common.is_chief(strategy):
        return paths, ms
    rs.write_predictions(examples, feats, results, FLAGS.n_best_size, FLAGS.max_answer_length,
                         FLAGS.do_lower_case, *paths)
    return paths, ms


def main(argv):
    del argv
    strategy = common.make_strategy()
    common.require(strategy is None or not FLAGS.do_train, "--do_train runs on one device: use --strategy default")
    config = common.check_common_flags()
    common.require(FLAGS.do_train or FLAGS.do_predict, "at least one of --do_train, --do_predict")
    common.require(not FLAGS.do_train or FLAGS.train_file, "--do_train needs --train_file")
    common.require(not FLAGS.do_predict or FLAGS.predict_file, "--do_predict needs --predict_file")
    common.require(FLAGS.max_seq_length > FLAGS.max_query_length + 3,
                   f"--max_seq_length {FLAGS.max_seq_length} leaves no room for the document after a "
                   f"{FLAGS.max_query_length}-token question")
    tf.compat.v1.logging.set_verbosity(max(tf.compat.v1.logging.get_verbosity(), tf.compat.v1.logging.WARN))
    tok = bert_compat.load("tokenization")
    tokenizer = tok.FullTokenizer(vocab_file=FLAGS.vocab_file, do_lower_case=FLAGS.do_lower_case)
    checkpoint = FLAGS.init_checkpoint
    if FLAGS.do_train:
        _, feats = read_features(FLAGS.train_file, tokenizer, True)
        if FLAGS.max_train_examples:
            feats = feats[:FLAGS.max_train_examples]
        common.require(feats, "no training features")
        steps = max(1, int(len(feats) / FLAGS.train_batch_size * FLAGS.num_train_epochs))
        tf.random.set_seed(FLAGS.seed)
        model = QAModel(config, is_training=True)
        if FLAGS.init_checkpoint:
            common.restore_present(FLAGS.init_checkpoint, model.variables_by_name())
        dataset = (tf.data.Dataset.from_tensor_slices(arrays(feats, True)).repeat()
                   .shuffle(min(len(feats), 10000), seed=FLAGS.seed).batch(FLAGS.train_batch_size, drop_remainder=True))
        checkpoint, losses = common.train(model.bert, model.head, model.loss, dataset, steps, FLAGS.output_dir)
        print(f"trained {steps} steps; loss {np.mean(losses[:10]):.4f} -> {np.mean(losses[-10:]):.4f}; {checkpoint}")
    if FLAGS.do_predict:
        common.require(checkpoint, "--init_checkpoint is required for --do_predict without --do_train")
        examples, feats = read_features(FLAGS.predict_file, tokenizer, False)  # bad data fails before the model
        with common.strategy_scope(strategy):
            model = QAModel(config, is_training=False)
        common.restore_inference(checkpoint, model.bert, model.variables_by_name())
        paths, ms = predict(model, examples, feats, FLAGS.output_dir, strategy=strategy)
        print(f"{len(examples)} questions, {len(feats)} features, {ms / max(len(feats), 1):.2f} ms/feature; "
              f"wrote {paths[0]} and {paths[1]}")


if __name__ == "__main__":
    cli.run(main)
