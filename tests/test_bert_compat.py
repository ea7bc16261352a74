"""Google BERT's modules under TF 2.21 through bert_compat, without side effects on TF."""
import sys

import absl.flags
import numpy as np
import tensorflow as tf

from conftest import MINILM, MRPC, needs_shared
from fastbert_tf import bert_compat


def test_loads_without_touching_tensorflow():
    before = set(sys.modules)
    for name in ("tokenization", "modeling", "optimization", "run_classifier", "run_squad"):
        bert_compat.load(name)
    added = set(sys.modules) - before
    assert not any(m.startswith("tensorflow.contrib") or m == "bert.modeling" for m in added)
    assert "task_name" not in absl.flags.FLAGS and "predict_file" not in absl.flags.FLAGS
    assert not hasattr(tf.compat.v1, "contrib")
    rs = bert_compat.load("run_squad")
    assert rs.FLAGS.version_2_with_negative is False  # private flags, parsed with defaults
    assert bert_compat.load("run_squad") is rs


@needs_shared
def test_tokenizer_and_processor_on_real_data():
    tok = bert_compat.load("tokenization").FullTokenizer(f"{MINILM}/vocab.txt", do_lower_case=True)
    assert tok.tokenize("Tab shares jumped 20 cents, or 4.6%.") == \
        ["tab", "shares", "jumped", "20", "cents", ",", "or", "4", ".", "6", "%", "."]
    rc = bert_compat.load("run_classifier")
    examples = rc.MrpcProcessor().get_dev_examples(MRPC)
    assert len(examples) == 408
    feats = rc.convert_examples_to_features(examples[:4], ["0", "1"], 64, tok)
    assert all(len(f.input_ids) == 64 and f.input_ids[0] == tok.vocab["[CLS]"] for f in feats)


def test_google_modeling_names_match_ours():
    from fastbert_tf import modeling as ours
    google = bert_compat.load("modeling")
    cfg = dict(vocab_size=50, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
               max_position_embeddings=16, type_vocab_size=2)
    with tf.Graph().as_default():
        google.BertModel(google.BertConfig(**cfg), False, tf.compat.v1.placeholder(tf.int32, [1, 4]))
        google_names = {v.name for v in tf.compat.v1.global_variables()}
    model = ours.BertModel(ours.BertConfig(**cfg), False)
    assert {v.name for v in model.variables_by_name.values()} == google_names
    np.testing.assert_equal(len(google_names), 5 + 16 * 2 + 2)
