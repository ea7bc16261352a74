"""fastbert_tf.modeling.BertModel against Google's modeling.py, on a Google-written checkpoint."""
import numpy as np
import pytest
import tensorflow as tf

from fastbert_tf import bert_compat, modeling

CFG = dict(vocab_size=120, hidden_size=64, num_hidden_layers=3, num_attention_heads=2, intermediate_size=128,
           max_position_embeddings=40, type_vocab_size=2)


@pytest.fixture(scope="module")
def google_checkpoint(tmp_path_factory):
    """A checkpoint written by Google's own BertModel (random init), and its outputs on inputs."""
    google = bert_compat.load("modeling")
    rng = np.random.default_rng(0)
    ids = rng.integers(0, CFG["vocab_size"], (3, 20)).astype(np.int32)
    lens = np.array([20, 7, 1])
    mask = (np.arange(20)[None] < lens[:, None]).astype(np.int32)
    types = (np.arange(20)[None] >= 5).astype(np.int32) * mask
    path = str(tmp_path_factory.mktemp("google") / "bert_model.ckpt")
    with tf.Graph().as_default():
        tf.compat.v1.set_random_seed(1)
        ph = [tf.compat.v1.placeholder(tf.int32, [3, 20]) for _ in range(3)]
        model = google.BertModel(google.BertConfig(**CFG), False, ph[0], ph[1], ph[2])
        with tf.compat.v1.Session() as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            # gamma/beta/biases are 1/0 at init: move them so every path matters
            for v in tf.compat.v1.global_variables():
                sess.run(v.assign(v + tf.random.normal(v.shape, stddev=0.1)))
            seq, pooled = sess.run([model.get_sequence_output(), model.get_pooled_output()],
                                   {ph[0]: ids, ph[1]: mask, ph[2]: types})
            tf.compat.v1.train.Saver().save(sess, path)
    return path, (ids, mask, types), seq, pooled


@pytest.mark.parametrize("use_fast_op,remove_padding", [(False, False), (True, False), (True, True)])
def test_loads_google_checkpoint_and_matches(google_checkpoint, use_fast_op, remove_padding):
    path, (ids, mask, types), seq, pooled = google_checkpoint
    model = modeling.BertModel(modeling.BertConfig(**CFG), False, use_fast_op=use_fast_op,
                               remove_padding=remove_padding)
    unused = modeling.load_checkpoint(path, model.variables_by_name)
    assert unused == []  # and no variable was missing (load_checkpoint raises then)
    got = model(ids, mask, types).numpy()
    np.testing.assert_allclose(got, pooled, atol=2e-5)
    out = model.get_sequence_output().numpy()
    real = mask.astype(bool)
    np.testing.assert_allclose(out[real], seq[real], atol=2e-5)  # Google's padded rows are not zeros
    assert not np.any(out[~real])


def test_constructor_like_google_and_float16(google_checkpoint):
    path, (ids, mask, types), seq, pooled = google_checkpoint
    model = modeling.BertModel(modeling.BertConfig(**CFG), False, ids, mask, types, floatx="float16")
    modeling.load_checkpoint(path, model.variables_by_name)
    got = model(ids, mask, types).numpy().astype(np.float32)
    assert np.abs(got - pooled).max() < 2e-2


def test_checkpoint_errors(google_checkpoint, tmp_path):
    path = google_checkpoint[0]
    wrong = modeling.BertModel(modeling.BertConfig(**dict(CFG, intermediate_size=96)), False)
    with pytest.raises(ValueError, match="has shape \\[64, 128\\] but the config gives \\[64, 96\\]"):
        modeling.load_checkpoint(path, wrong.variables_by_name)
    deeper = modeling.BertModel(modeling.BertConfig(**dict(CFG, num_hidden_layers=4)), False)
    with pytest.raises(ValueError, match="lacks .* e.g. 'bert/encoder/layer_3/"):
        modeling.load_checkpoint(path, deeper.variables_by_name)
    with pytest.raises(ValueError, match="cannot read checkpoint"):
        modeling.load_checkpoint(str(tmp_path / "nothing"), wrong.variables_by_name)
    with pytest.raises(ValueError, match="max_position_embeddings"):
        deeper(np.zeros([1, 41], np.int32))
    with pytest.raises(ValueError, match="hidden_act 'relu'"):
        modeling.BertConfig(**dict(CFG, hidden_act="relu"))
    with pytest.raises(ValueError, match="use_fast_op=False to train"):
        modeling.BertModel(modeling.BertConfig(**CFG), True)(np.zeros([1, 4], np.int32))
