"""The four TPs: their numbers, names, questions (= the answer functions' names) and points.

Light on purpose (no PyTorch import): the command line reads it to list the TPs.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Assignment", "TPS"]


@dataclass(frozen=True)
class Assignment:
    """One TP.

    Args:
        number: 1 to 4.
        name: the notebook's file stem, e.g. ``"tp1_vit"`` (``notebooks/pt/tp1_vit.ipynb``).
        questions: the question names, in the notebook's order; each is the name of the function
            an answer cell defines.
        points: points per question, same order; ``None``: 1 point each.

    Raises:
        ValueError: if ``points`` does not have one positive value per question.
    """

    number: int
    name: str
    questions: tuple[str, ...]
    points: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        if self.points is None:
            object.__setattr__(self, "points", (1.0,) * len(self.questions))
        if len(self.points) != len(self.questions) or min(self.points) <= 0:
            raise ValueError(f"{self.name}: expected one positive point value per question, got {self.points}")

    @property
    def max_points(self) -> float:
        """The total a full-marks submission gets."""
        return float(sum(self.points))


TPS: dict[int, Assignment] = {
    a.number: a
    for a in (
        Assignment(1, "tp1_vit", ("patchify", "patch_embedding", "scaled_dot_product_attention", "multi_head_attention",
                                  "encoder_block")),
        Assignment(2, "tp2_cvt", ("token_map_size", "conv_token_embedding", "conv_projection", "conv_projection_with_cls")),
        Assignment(3, "tp3_swin", ("window_partition", "window_reverse", "cyclic_shift", "shifted_window_mask",
                                   "relative_position_index")),
        Assignment(4, "tp4_efficient_attention", ("spatial_reduction_attention", "online_softmax", "tiled_attention")),
    )
}
