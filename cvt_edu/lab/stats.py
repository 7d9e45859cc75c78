"""Statistics for reading results honestly: how far apart two accuracies must be to tell them apart."""

from __future__ import annotations

import math

__all__ = ["accuracy_stderr"]

def accuracy_stderr(accuracy: float, n: int) -> float:
    """Standard error of an accuracy measured on ``n`` test images: sqrt(a (1 - a) / n) (binomial).

    Two accuracies that differ by less than about two of these are not told apart by the test set.

    Raises:
        ValueError: for an accuracy outside [0, 1] or n < 1.
    """
    if not 0 <= accuracy <= 1 or n < 1:
        raise ValueError(f"need 0 <= accuracy <= 1 and n >= 1, got accuracy={accuracy}, n={n}")
    return math.sqrt(accuracy * (1 - accuracy) / n)
