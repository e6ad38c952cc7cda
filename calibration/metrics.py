"""Scores of a decoder: accuracy, balanced accuracy, Cohen's kappa, confusion matrix, Wolpaw ITR."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from sklearn.metrics import accuracy_score, balanced_accuracy_score, cohen_kappa_score
from sklearn.metrics import confusion_matrix as _confusion_matrix


def wolpaw_bits(n_classes: int, accuracy: float) -> float:
    """Bits per selection (Wolpaw et al. 2002).

    B = log2 N + P log2 P + (1 - P) log2((1 - P) / (N - 1)); 0 at or below chance.
    """
    n = int(n_classes)
    p = float(accuracy)
    if n < 2 or p <= 1.0 / n:
        return 0.0
    bits = math.log2(n)
    if p >= 1.0:
        return bits
    return bits + p * math.log2(p) + (1 - p) * math.log2((1 - p) / (n - 1))


def wolpaw_itr(n_classes: int, accuracy: float, decision_s: float) -> float:
    """Information transfer rate in bits per minute at one selection every ``decision_s`` s."""
    if decision_s <= 0:
        raise ValueError(f"decision_s must be positive, got {decision_s}.")
    return wolpaw_bits(n_classes, accuracy) * 60.0 / float(decision_s)


def score_predictions(y_true: Sequence[str], y_pred: Sequence[str], classes: Sequence[str],
                      decision_s: float) -> dict:
    """All the figures ``yume train`` reports for one set of predictions.

    Returns
    -------
    dict
        ``accuracy``, ``balanced_accuracy``, ``kappa``, ``confusion`` (rows: true class, columns:
        predicted, in ``classes`` order), ``classes``, ``n``, ``bits_per_decision``,
        ``itr_bits_per_min``, ``decision_s``, ``chance``.
    """
    y_true = np.asarray(y_true)
    y_pred = np.asarray(y_pred)
    acc = float(accuracy_score(y_true, y_pred))
    kappa = cohen_kappa_score(y_true, y_pred, labels=list(classes))
    return {
        "accuracy": acc,
        "balanced_accuracy": float(balanced_accuracy_score(y_true, y_pred)),
        "kappa": 0.0 if np.isnan(kappa) else float(kappa),
        "confusion": _confusion_matrix(y_true, y_pred, labels=list(classes)).tolist(),
        "classes": list(classes),
        "n": int(len(y_true)),
        "bits_per_decision": wolpaw_bits(len(classes), acc),
        "itr_bits_per_min": wolpaw_itr(len(classes), acc, decision_s),
        "decision_s": float(decision_s),
        "chance": 1.0 / len(classes),
    }


def binomial_summary(k: int, n: int, chance: float) -> dict:
    """Accuracy ``k / n`` with its exact 95 % interval and the one-sided p-value vs chance.

    ``within_chance`` is the test's verdict, ``p_vs_chance >= 0.05`` (one-sided, "better than
    chance?"); the two-sided interval can still reach chance when p is just below 0.05, and a
    flag that disagreed with the p-value printed beside it would read as an error.
    """
    from scipy.stats import binomtest

    p_value = binomtest(int(k), int(n), float(chance), alternative="greater").pvalue
    ci = binomtest(int(k), int(n)).proportion_ci(confidence_level=0.95, method="exact")
    return {"accuracy": k / n, "n": int(n), "correct": int(k), "chance": float(chance),
            "ci95": [float(ci.low), float(ci.high)], "p_vs_chance": float(p_value),
            "within_chance": bool(p_value >= 0.05)}
