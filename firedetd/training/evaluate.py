"""Classification metrics: accuracy, per-class precision/recall, confusion matrix, false alarms on `none`."""

from __future__ import annotations

import numpy as np


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def confusion_matrix(labels: np.ndarray, predicted: np.ndarray, num_classes: int) -> np.ndarray:
    """Rows: true class; columns: predicted class."""
    cm = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(cm, (labels, predicted), 1)
    return cm


def alarm_predictions(probs: np.ndarray, labels: tuple[str, ...], thresholds: dict[str, float] | None) -> np.ndarray:
    """Argmax, except that with thresholds a fire/smoke argmax below its threshold counts as `none`."""
    predicted = probs.argmax(axis=1)
    if not thresholds:
        return predicted
    none_index = labels.index("none")
    for index, label in enumerate(labels):
        if label in thresholds:
            weak = (predicted == index) & (probs[:, index] < thresholds[label])
            predicted[weak] = none_index
    return predicted


def classification_metrics(probs: np.ndarray, labels_true: np.ndarray, labels: tuple[str, ...],
                           thresholds: dict[str, float] | None = None) -> dict:
    """Metrics for one split; `none_false_alarm_rate` is the share of `none` images called fire or smoke."""
    predicted = alarm_predictions(probs, labels, thresholds)
    cm = confusion_matrix(labels_true, predicted, len(labels))
    per_class = {}
    for i, label in enumerate(labels):
        tp = cm[i, i]
        precision = tp / cm[:, i].sum() if cm[:, i].sum() else 0.0
        recall = tp / cm[i, :].sum() if cm[i, :].sum() else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_class[label] = {"precision": float(precision), "recall": float(recall), "f1": float(f1),
                            "support": int(cm[i, :].sum())}
    none = labels.index("none")
    none_total = cm[none, :].sum()
    return {
        "accuracy": float(np.trace(cm) / max(cm.sum(), 1)),
        "per_class": per_class,
        "confusion": cm.tolist(),
        "none_false_alarm_rate": float((none_total - cm[none, none]) / none_total) if none_total else 0.0,
        "count": int(cm.sum()),
    }
