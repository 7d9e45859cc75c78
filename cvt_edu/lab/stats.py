"""Statistics for reading results honestly: how far apart two accuracies must be to tell them apart.

- :func:`accuracy_stderr`: the binomial standard error of one accuracy;
- :func:`mcnemar`: the paired test of two models on the same test images (exact, on the discordant pairs);
- :func:`mean_sd`: mean and sample standard deviation over seeds;
- :func:`seeds_table`: a Markdown table of mean ± sd per model from the committed results
  (:mod:`cvt_edu.lab.results`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple

__all__ = ["accuracy_stderr", "McNemar", "mcnemar", "mean_sd", "seeds_table"]


def accuracy_stderr(accuracy: float, n: int) -> float:
    """Standard error of an accuracy measured on ``n`` test images: sqrt(a (1 - a) / n) (binomial).

    Two accuracies that differ by less than about two of these are not told apart by the test set.

    Raises:
        ValueError: for an accuracy outside [0, 1] or n < 1.
    """
    if not 0 <= accuracy <= 1 or n < 1:
        raise ValueError(f"need 0 <= accuracy <= 1 and n >= 1, got accuracy={accuracy}, n={n}")
    return math.sqrt(accuracy * (1 - accuracy) / n)


class McNemar(NamedTuple):
    """The outcome of :func:`mcnemar`.

    Attributes:
        b: images model A gets right and model B wrong.
        c: images model A gets wrong and model B right.
        n: images compared.
        p_value: exact two-sided p-value, in [0, 1].
    """

    b: int
    c: int
    n: int
    p_value: float


def mcnemar(pred_a: Sequence[int], pred_b: Sequence[int], labels: Sequence[int]) -> McNemar:
    """McNemar's test of two classifiers on the same images (McNemar 1947), in its exact form.

    Only the discordant images tell the two apart: ``b`` that A gets right and B wrong, ``c`` the
    reverse. Under the null hypothesis (both models equally accurate) each discordant image is
    A's win with probability 1/2, so ``b ~ Binomial(b + c, 1/2)``; the p-value is the two-sided
    exact binomial test of ``b`` (``scipy.stats.binomtest``), without the continuity correction of
    the chi-squared approximation. With no discordant image (``b + c == 0``) nothing tells the
    models apart and the p-value is 1.

    Args:
        pred_a, pred_b: predicted classes of each image, shape (n,), ints (lists, arrays or tensors).
        labels: true classes, shape (n,), in the same order.

    Returns:
        :class:`McNemar` ``(b, c, n, p_value)``.

    Raises:
        ValueError: if the three do not have the same length, or are empty.
    """
    from scipy.stats import binomtest

    a, b_, y = (list(map(int, v)) for v in (pred_a, pred_b, labels))
    if not (len(a) == len(b_) == len(y)) or not y:
        raise ValueError(f"mcnemar: expected predictions of two models and labels of the same images, got lengths "
                         f"{len(a)}, {len(b_)} and {len(y)}")
    b = sum(pa == t and pb != t for pa, pb, t in zip(a, b_, y))
    c = sum(pa != t and pb == t for pa, pb, t in zip(a, b_, y))
    p = 1.0 if b + c == 0 else float(binomtest(b, b + c, 0.5, alternative="two-sided").pvalue)
    return McNemar(b, c, len(y), min(1.0, p))


def mean_sd(values: Iterable[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof = 1, the n - 1 denominator) of ``values``, e.g. accuracies over seeds.

    Returns:
        ``(mean, sd)``; ``sd`` is NaN for a single value (one seed tells nothing of the spread).

    Raises:
        ValueError: for no values, or a value that is not a finite number.
    """
    v = [float(x) for x in values]
    if not v or not all(math.isfinite(x) for x in v):
        raise ValueError(f"mean_sd: expected one or more finite numbers, got {v}")
    mean = sum(v) / len(v)
    sd = math.sqrt(sum((x - mean) ** 2 for x in v) / (len(v) - 1)) if len(v) > 1 else math.nan
    return mean, sd


def seeds_table(results: Iterable[Mapping[str, Any]] | Mapping[str, Mapping[str, Any]], *, metric: str | None = None) -> str:
    """A Markdown table of each model's accuracy over seeds: mean ± sd (percent), the number of seeds, the parameters.

    Args:
        results: results records as :func:`cvt_edu.lab.results.load_results` returns them (its dict, or
            its values): each with ``model``, ``params``, ``seed`` and ``metrics``.
        metric: ``"test_accuracy"`` or ``"val_accuracy"``; ``None``: the one every record has.
            Models appear in the order they first come.

    Raises:
        ValueError: for no records, records that mix test and validation metrics, a model that has the
            same seed twice, or a model whose records disagree on the parameter count.
    """
    from ..viz.tables import markdown_table

    records = list(results.values()) if isinstance(results, Mapping) else list(results)
    if not records:
        raise ValueError("seeds_table: expected one or more results records, got none")
    if metric is None:
        kinds = {"test_accuracy" if "test_accuracy" in r["metrics"] else "val_accuracy" for r in records}
        if len(kinds) > 1:
            raise ValueError("seeds_table: the records mix test and validation accuracies; pass metric= or separate them")
        metric = kinds.pop()
    by_model: dict[str, list[Mapping[str, Any]]] = {}
    for r in records:
        by_model.setdefault(r["model"], []).append(r)
    rows = []
    for model, runs in by_model.items():
        seeds = [r["seed"] for r in runs]
        if len(set(seeds)) != len(seeds):
            raise ValueError(f"seeds_table: {model} has seed {max(seeds, key=seeds.count)} more than once")
        if len({r["params"] for r in runs}) > 1:
            raise ValueError(f"seeds_table: the runs of {model} have different parameter counts (another model config?)")
        mean, sd = mean_sd(100 * r["metrics"][metric] for r in runs)
        rows.append([model, f"{mean:.1f} ± {sd:.1f}" if len(runs) > 1 else f"{mean:.1f}", len(runs), f"{runs[0]['params'] / 1e6:.2f}"])
    what = "test accuracy (%)" if metric == "test_accuracy" else "validation accuracy (%)"
    return markdown_table(rows, ["model", f"{what}, mean ± sd", "seeds", "params (M)"], align="lrrr")
