"""Closed-form cost of one attention layer: the formulas the chapters derive, checked against measured FLOPs.

MSA (ViT), W-MSA (Swin), SRA (PVT) and CvT's squeezed convolutional projection, counted in
multiply-adds (MACs) on an h x w token map of width C.
"""

from __future__ import annotations

__all__ = ["attention_macs", "attention_terms"]

def attention_macs(
    kind: str,
    h: int,
    w: int,
    dim: int,
    *,
    window_size: int | None = None,
    sr_ratio: int | None = None,
    stride_kv: int | None = None,
    kernel_size: int = 3,
) -> int:
    """Multiply-adds of one attention layer on an h x w token map of width C, projections included.

    The formulas (softmax, normalisation and biases are not counted):

    - ``"msa"``, global multi-head self-attention (Swin paper, Eq. 1):
      4hwC^2 + 2(hw)^2 C  (Q, K, V and output projections; Q K^T and the weighted sum of V).
    - ``"w-msa"``, window attention with M x M windows (Swin paper, Eq. 2): 4hwC^2 + 2 M^2 hw C.
    - ``"sra"``, spatial-reduction attention with ratio R (PVT, Sec. 3.3): the reduction conv
      (kernel R, stride R) costs hwC^2, K and V are made from hw/R^2 tokens:
      3hwC^2 + 2hwC^2/R^2 + 2(hw)^2 C/R^2.
    - ``"cvt"``, CvT's convolutional projection with kernel k and K/V stride s (Sec. 3.2-3.3),
      no [CLS] token: depthwise convs k^2 hw C (1 + 2/s^2), linear maps 2hwC^2 + 2hwC^2/s^2,
      attention 2(hw)^2 C/s^2. The paper's Sec. 3.3 notes the s^2 saving.

    These are exactly what :func:`measured_macs` counts on the real layers (ViT's ``ViTAttention``,
    Swin's ``WindowAttention``, PVT's ``SpatialReductionAttention``, CvT's ``CvTAttention``, each a
    block's ``attn``; checked in ``tests/test_scaling.py`` with :func:`cvt_edu.cost.sweep.check_attention_formula`):
    ``FlopCounterMode`` does not count biases, BatchNorm, the relative position bias or the
    shifted-window mask either (all element-wise), so SW-MSA costs the same as W-MSA. Three
    things the formulas leave to the caller: a [CLS] token is not counted (ViT's layers see
    hw + 1 tokens); for ``"w-msa"`` pass the window the block really uses, which is the whole
    map when the map is not larger than M (:func:`cvt_edu.windows.window_and_shift`); and maps that
    M, R or s do not divide are refused rather than padded or rounded.

    Args:
        kind: ``"msa"``, ``"w-msa"``, ``"sra"`` or ``"cvt"``.
        h, w: token-map size; for ``"sra"`` and ``"cvt"`` divisible by R or s, for ``"w-msa"`` by M.
        dim: C, the token width.
        window_size, sr_ratio, stride_kv: M, R, s for their kinds.
        kernel_size: k of CvT's depthwise convolution.

    Returns:
        Multiply-adds (1 MAC = 2 FLOPs).

    Raises:
        ValueError: for an unknown kind, a missing parameter, or a map size it does not divide.
    """
    n, c = h * w, dim

    def need(value: int | None, name: str) -> int:
        if value is None:
            raise ValueError(f"attention_macs({kind!r}) needs {name}")
        if h % value or w % value:
            raise ValueError(f"{name}={value} does not divide the {h}x{w} token map")
        return value

    if kind == "msa":
        return 4 * n * c * c + 2 * n * n * c
    if kind == "w-msa":
        m = need(window_size, "window_size")
        return 4 * n * c * c + 2 * m * m * n * c
    if kind == "sra":
        r = need(sr_ratio, "sr_ratio")
        n_kv = n // (r * r)
        reduction = n * c * c if r > 1 else 0
        return 2 * n * c * c + reduction + 2 * n_kv * c * c + 2 * n * n_kv * c
    if kind == "cvt":
        s = need(stride_kv, "stride_kv")
        n_kv = n // (s * s)
        k2 = kernel_size * kernel_size
        return k2 * c * (n + 2 * n_kv) + 2 * n * c * c + 2 * n_kv * c * c + 2 * n * n_kv * c
    raise ValueError(f"unknown attention kind {kind!r}; expected 'msa', 'w-msa', 'sra' or 'cvt'")


def attention_terms(kind: str, h: int, w: int, dim: int, *, stride_kv: int = 1, kernel_size: int = 3) -> dict[str, int]:
    """The multiply-adds of one attention layer split into its three parts.

    ``"msa"`` (linear projection, ViT) and ``"cvt"`` (convolutional projection with K/V stride
    s; Sec. 3.2-3.3), on an h x w token map of width C, no [CLS] token:

    - ``"conv"``: the depthwise convolutions, k^2 hw C (1 + 2/s^2) (0 for ``"msa"``);
    - ``"linear"``: W^Q and W^O on hw tokens, W^K and W^V on hw/s^2 tokens: 2hwC^2 + 2hwC^2/s^2;
    - ``"attention"``: Q K^T and the weighted sum of V, 2 (hw)(hw/s^2) C.

    They add up to :func:`cvt_edu.cost.formulas.attention_macs` of the same layer.

    Raises:
        ValueError: for another kind, or a stride that does not divide the map.
    """
    if kind not in ("msa", "cvt"):
        raise ValueError(f"attention_terms knows 'msa' and 'cvt', got {kind!r}")
    s = 1 if kind == "msa" else stride_kv
    if h % s or w % s:
        raise ValueError(f"stride_kv={s} does not divide the {h}x{w} token map")
    n, n_kv, c = h * w, h * w // (s * s), dim
    terms = {
        "conv": 0 if kind == "msa" else kernel_size * kernel_size * c * (n + 2 * n_kv),
        "linear": 2 * n * c * c + 2 * n_kv * c * c,
        "attention": 2 * n * n_kv * c,
    }
    expected = attention_macs(kind, h, w, dim, **({} if kind == "msa" else dict(stride_kv=s, kernel_size=kernel_size)))
    assert sum(terms.values()) == expected, (terms, expected)
    return terms
