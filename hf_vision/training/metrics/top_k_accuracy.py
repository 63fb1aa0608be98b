"""Top-k accuracy as an `evaluate` metric module, shipped in the package so it loads without the Hub.

predictions: per-example class scores (logits or probabilities), references: integer labels.
Returns {"top1_accuracy": ..., "top5_accuracy": ...} for k in `top_k` (k larger than the class count counts as
the class count).
"""
import datasets
import evaluate
import numpy as np

_DESCRIPTION = "Fraction of examples whose label is among the k highest-scoring classes."
_KWARGS_DESCRIPTION = """
Args:
    predictions (list of list of float): class scores, one row per example.
    references (list of int): the true class of each example.
    top_k (tuple of int): the k values to report (default (1, 5)).
Returns:
    dict: {"top{k}_accuracy": float} for each k.
"""


class TopKAccuracy(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Sequence(datasets.Value("float32")), "references": datasets.Value("int64")}
            ),
        )

    def _compute(self, predictions, references, top_k=(1, 5)):
        scores = np.asarray(predictions, dtype=np.float64)
        labels = np.asarray(references, dtype=np.int64)
        if scores.ndim != 2 or scores.shape[0] != labels.shape[0]:
            raise ValueError(f"predictions must be (N, classes) and references (N,), got {scores.shape}, {labels.shape}")
        # Rank of the true class's score: the number of classes scoring strictly higher (ties count in its favour).
        true_scores = scores[np.arange(len(labels)), labels]
        rank = (scores > true_scores[:, None]).sum(axis=1)
        return {f"top{k}_accuracy": float((rank < min(k, scores.shape[1])).mean()) for k in top_k}
