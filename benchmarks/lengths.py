"""The sequence lengths the benchmark feeds (--lengths): what traffic a server sees.

    fixed          one vector, the same every call: lengths spread over [1, S] with mean S/2
    uniform        a new vector every call, each length uniform in [min(20, S), S]
    dataset:PATH   a new vector every call, each length drawn from the token counts of a real dataset
                   (a GLUE train/dev/test .tsv read by Google's processors, or a SQuAD v1.1 .json),
                   tokenized with --vocab_file as run_classifier / run_squad do, cut at S
    repeat:SPEC    one vector of SPEC (uniform or dataset:PATH), the same every call: of 256 draws the one
                   whose token count is nearest their mean, so that it is SPEC's work without new lengths
"""
import os

import numpy as np


def half_lengths(batch, seq_len):
    """Deterministic lengths spread over [1, S] with mean S/2 (all S/2 when B = 1)."""
    if batch == 1:
        return np.array([max(1, seq_len // 2)], np.int32)
    lens = np.round((np.arange(batch) + 0.5) / batch * seq_len).astype(np.int32)
    return np.clip(lens, 1, seq_len)


def dataset_token_counts(path, vocab_file, task="mrpc", do_lower_case=True):
    """Untruncated token counts ([CLS] a [SEP] (b [SEP])) of every example of a GLUE .tsv or a SQuAD
    v1.1 .json (question + paragraph, as run_squad's first window)."""
    import tensorflow as tf
    from fastbert_tf import bert_compat
    if not os.path.isfile(path):
        raise ValueError(f"dataset:{path}: no such file")
    if not vocab_file or not os.path.isfile(vocab_file):
        raise ValueError(f"dataset lengths need --vocab_file (the model's vocab.txt), got {vocab_file!r}")
    tf.compat.v1.logging.set_verbosity(tf.compat.v1.logging.WARN)
    tok = bert_compat.load("tokenization").FullTokenizer(vocab_file, do_lower_case=do_lower_case)
    if path.endswith(".json"):
        examples = bert_compat.load("run_squad").read_squad_examples(path, is_training=False)
        counts, docs = [], {}
        for e in examples:
            doc = " ".join(e.doc_tokens)
            if doc not in docs:
                docs[doc] = sum(len(tok.tokenize(t)) for t in e.doc_tokens)
            counts.append(len(tok.tokenize(e.question_text)) + docs[doc] + 3)
    else:
        processors = bert_compat.glue_processors()
        if task not in processors:
            raise ValueError(f"--lengths_task must be one of {sorted(processors)}, got {task!r}")
        proc = processors[task]()
        split = os.path.basename(path).split(".")[0]
        read = {"train": proc.get_train_examples, "dev": proc.get_dev_examples, "test": proc.get_test_examples}
        if split not in read:
            raise ValueError(f"dataset:{path}: expected a GLUE train.tsv, dev.tsv or test.tsv")
        try:
            examples = read[split](os.path.dirname(os.path.abspath(path)))
        except (IndexError, KeyError, ValueError) as e:
            raise ValueError(f"dataset:{path}: not a {task} file ({type(e).__name__}: {e})") from None
        counts = [len(tok.tokenize(e.text_a)) + (len(tok.tokenize(e.text_b)) + 1 if e.text_b else 0) + 2
                  for e in examples]
    if not counts:
        raise ValueError(f"dataset:{path}: no examples")
    return np.array(counts, np.int32)


class Lengths:
    """One --lengths entry: vectors(batch, seq_len, n, rng) gives n length vectors, one per call."""

    def __init__(self, spec, vocab_file=None, task="mrpc"):
        self.spec = spec
        self.counts = None
        self.repeat = spec.startswith("repeat:")
        if self.repeat:
            inner = Lengths(spec[len("repeat:"):], vocab_file, task)
            if not inner.varies:
                raise ValueError(f"--lengths: repeat: needs uniform or dataset:PATH, got {spec!r}")
            self.inner, self.counts, self.name = inner, inner.counts, "repeat:" + inner.name
        elif spec.startswith("dataset:"):
            self.counts = dataset_token_counts(spec[len("dataset:"):], vocab_file, task)
            self.name = "dataset:" + os.path.splitext(os.path.basename(spec))[0]
        elif spec in ("fixed", "uniform"):
            self.name = spec
        else:
            raise ValueError(f"--lengths: expected fixed, uniform or dataset:PATH, got {spec!r}")

    @property
    def varies(self):
        return self.spec != "fixed" and not self.repeat

    def vectors(self, batch, seq_len, n, rng):
        if self.repeat:
            draws = self.inner.vectors(batch, seq_len, 256, rng)
            totals = np.array([v.sum() for v in draws])
            return [draws[int(np.argmin(np.abs(totals - totals.mean())))]] * n
        if self.spec == "fixed":
            return [half_lengths(batch, seq_len)] * n
        if self.spec == "uniform":
            lo = min(20, seq_len)
            return [rng.integers(lo, seq_len + 1, batch).astype(np.int32) for _ in range(n)]
        return [np.minimum(rng.choice(self.counts, batch), seq_len).astype(np.int32) for _ in range(n)]

    def histogram(self):
        """Token-count histogram of the dataset (bins of 16 tokens), for the results file."""
        if self.counts is None:
            return None
        edges = np.arange(0, int(self.counts.max()) + 17, 16)
        hist, _ = np.histogram(self.counts, edges)
        return {"bin_tokens": 16, "counts": hist.tolist(), "examples": int(len(self.counts)),
                "mean": float(self.counts.mean()), "median": float(np.median(self.counts))}
