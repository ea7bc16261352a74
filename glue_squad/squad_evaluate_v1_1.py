"""The official SQuAD v1.1 metric (exact match and F1 over normalized answers).

    python -m glue_squad.squad_evaluate_v1_1 dev-v1.1.json predictions.json

Same normalization and scoring as the official evaluate-v1.1.py: lower-case, strip punctuation,
articles (a, an, the) and extra whitespace; each question scores its best match over the
ground-truth answers; unanswered questions count as 0.
"""
import argparse
import collections
import json
import re
import string
import sys

EXPECTED_VERSION = "1.1"


def normalize_answer(s):
    s = s.lower()
    s = "".join(ch for ch in s if ch not in set(string.punctuation))
    s = re.sub(r"\b(a|an|the)\b", " ", s)
    return " ".join(s.split())


def f1_score(prediction, ground_truth):
    pred, truth = normalize_answer(prediction).split(), normalize_answer(ground_truth).split()
    common = collections.Counter(pred) & collections.Counter(truth)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred), same / len(truth)
    return 2 * precision * recall / (precision + recall)


def exact_match_score(prediction, ground_truth):
    return float(normalize_answer(prediction) == normalize_answer(ground_truth))


def evaluate(dataset, predictions):
    """dataset: the json's 'data' list; predictions: {question id: answer text}."""
    f1 = exact = total = 0
    for article in dataset:
        for paragraph in article["paragraphs"]:
            for qa in paragraph["qas"]:
                total += 1
                if qa["id"] not in predictions:
                    print(f"Unanswered question {qa['id']} will receive score 0.", file=sys.stderr)
                    continue
                truths = [a["text"] for a in qa["answers"]]
                pred = predictions[qa["id"]]
                exact += max(exact_match_score(pred, t) for t in truths)
                f1 += max(f1_score(pred, t) for t in truths)
    if total == 0:
        raise ValueError("the dataset has no questions")
    return {"exact_match": 100.0 * exact / total, "f1": 100.0 * f1 / total}


def main(argv=None):
    parser = argparse.ArgumentParser(description="Evaluation for SQuAD " + EXPECTED_VERSION)
    parser.add_argument("dataset_file", help="Dataset file")
    parser.add_argument("prediction_file", help="Prediction File")
    args = parser.parse_args(argv)
    try:
        with open(args.dataset_file) as f:
            dataset_json = json.load(f)
        with open(args.prediction_file) as f:
            predictions = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        parser.error(str(e))
    if dataset_json.get("version") != EXPECTED_VERSION:
        print(f"Evaluation expects v-{EXPECTED_VERSION}, but got dataset with v-{dataset_json.get('version')}",
              file=sys.stderr)
    print(json.dumps(evaluate(dataset_json["data"], predictions)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
