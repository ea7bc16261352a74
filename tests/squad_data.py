"""SQuAD-format data built from real text (MRPC sentences) and a QA checkpoint for tests."""
import csv
import json
import os

import numpy as np
import tensorflow as tf

from conftest import MRPC


def mrpc_rows(split="dev"):
    with open(os.path.join(MRPC, f"{split}.tsv"), encoding="utf-8") as f:
        rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))[1:]
    return [(r[3], r[4]) for r in rows]


def squad_json(path, n=40, seed=0):
    """Paragraph = two paraphrase sentences (long enough to need several doc_stride windows when
    several pairs are joined); question = a phrase of the second; answer = a span of the first."""
    rng = np.random.default_rng(seed)
    rows = mrpc_rows()
    data = []
    for i in range(n):
        pairs = [rows[(3 * i + k) % len(rows)] for k in range(1 + i % 4)]
        context = " ".join(a + " " + b for a, b in pairs)
        words = pairs[0][0].split()
        start_word = int(rng.integers(0, max(1, len(words) - 3)))
        answer = " ".join(words[start_word:start_word + 1 + int(rng.integers(0, 3))])
        question = "What about " + " ".join(pairs[0][1].split()[:6]) + "?"
        data.append({"title": f"mrpc-{i}", "paragraphs": [{"context": context, "qas": [
            {"id": f"q{i}", "question": question,
             "answers": [{"text": answer, "answer_start": context.index(answer)}]}]}]})
    with open(path, "w") as f:
        json.dump({"version": "1.1", "data": data}, f)
    return path


def add_qa_head(converted_dir, out_prefix, seed=0):
    """The converted model's variables plus a random (seeded) cls/squad head."""
    from fastbert_tf import modeling
    reader = tf.train.load_checkpoint(os.path.join(converted_dir, "bert_model.ckpt"))
    rng = np.random.default_rng(seed)
    hidden = reader.get_variable_to_shape_map()["bert/pooler/dense/bias"][0]
    values = {n: reader.get_tensor(n) for n in reader.get_variable_to_shape_map()}
    values["cls/squad/output_weights"] = rng.standard_normal((2, hidden)).astype(np.float32)
    values["cls/squad/output_bias"] = np.zeros(2, np.float32)
    return modeling.save_checkpoint({n: tf.Variable(v, name=n) for n, v in values.items()}, out_prefix)
