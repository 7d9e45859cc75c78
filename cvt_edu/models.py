"""The model registry: build any course model by name, or rebuild it from a saved config."""

from __future__ import annotations

from dataclasses import MISSING, asdict, fields, replace
from typing import Any, Callable

from torch import nn

from .cvt import CvT, CvTConfig, CvTStageConfig, LinearCvT
from .pvt import PVT, PVTConfig, PVTStageConfig
from .resnet import ResNet, ResNetConfig
from .swin import Swin, SwinConfig, SwinStageConfig
from .vit import ViT, ViTConfig

__all__ = ["MODELS", "arch_of", "list_models", "model_config", "build_model", "model_from_config", "config_to_dict"]

ARCHITECTURES: dict[str, tuple[type[nn.Module], type]] = {
    "vit": (ViT, ViTConfig),
    "cvt": (CvT, CvTConfig),
    "swin": (Swin, SwinConfig),
    "pvt": (PVT, PVTConfig),
    "cvt-linear": (LinearCvT, CvTConfig),
    "resnet": (ResNet, ResNetConfig),
}
# The per-stage config of the architectures whose config holds ``stages`` (a list of dicts in config.json).
STAGE_CONFIGS: dict[str, type] = {"cvt": CvTStageConfig, "swin": SwinStageConfig, "pvt": PVTStageConfig,
                                  "cvt-linear": CvTStageConfig}


def _vit(**kw: Any) -> tuple[str, ViTConfig]:
    return "vit", ViTConfig(**kw)


def _swin(embed_dim: int, depths: tuple[int, ...], num_heads: tuple[int, ...], window_size: int, **kw: Any) -> tuple[str, SwinConfig]:
    """Swin's stages as the paper lists them: width C doubling from stage to stage, one window size."""
    stages = tuple(
        SwinStageConfig(embed_dim=embed_dim * 2**i, depth=d, num_heads=h, window_size=window_size)
        for i, (d, h) in enumerate(zip(depths, num_heads))
    )
    return "swin", SwinConfig(stages=stages, **kw)


def _pvt(stages: list[PVTStageConfig], **kw: Any) -> tuple[str, PVTConfig]:
    return "pvt", PVTConfig(stages=tuple(stages), **kw)


def _cvt(stages: list[dict[str, Any]], **kw: Any) -> tuple[str, CvTConfig]:
    return "cvt", CvTConfig(stages=tuple(CvTStageConfig(**s) for s in stages), **kw)


# CvT-13/21/W24 from Wu et al. 2021, Table 2: stage 1 embeds with a 7x7 conv of stride 4,
# stages 2-3 with 3x3 convs of stride 2; only stage 3 has the [CLS] token.
def _cvt_imagenet(dims: tuple[int, int, int], heads: tuple[int, int, int], depths: tuple[int, int, int]) -> tuple[str, CvTConfig]:
    return _cvt(
        [
            dict(embed_dim=dims[0], depth=depths[0], num_heads=heads[0], kernel_size=7, stride=4, padding=2),
            dict(embed_dim=dims[1], depth=depths[1], num_heads=heads[1]),
            dict(embed_dim=dims[2], depth=depths[2], num_heads=heads[2], cls_token=True, drop_path=0.1),
        ]
    )


def _cvt_tiny_stages() -> list[dict[str, Any]]:
    return [
        dict(embed_dim=64, depth=1, num_heads=1, mlp_ratio=2.0, kernel_size=3, stride=2, padding=1),
        dict(embed_dim=128, depth=2, num_heads=2, mlp_ratio=2.0, drop_path=0.05),
        dict(embed_dim=192, depth=2, num_heads=3, mlp_ratio=2.0, cls_token=True, drop_path=0.1),
    ]


# cvt-tiny with both convolutional parts made linear (see cvt_edu.cvt.LinearCvT): 2x2 patches of stride 2 in
# every stage (16x16, 8x8, 4x4 token maps, as cvt-tiny's 3x3 convolutions of stride 2), linear Q/K/V on all
# tokens (the projection's kernel and strides are then unused, and written as 1, 0, 1 so that config.json
# says so), a learned positional embedding per stage.
_LINEAR = dict(kernel_size=2, stride=2, padding=0, projection="linear", kernel_qkv=1, padding_q=0, padding_kv=0, stride_kv=1)


def _cvt_linear(stages: list[dict[str, Any]], **kw: Any) -> tuple[str, CvTConfig]:
    return "cvt-linear", CvTConfig(stages=tuple(CvTStageConfig(**{**s, **_LINEAR}) for s in stages), **kw)


MODELS: dict[str, Callable[[], tuple[str, Any]]] = {
    # Sized for 32x32 CIFAR images; parameter counts within 15% of each other.
    "vit-tiny": lambda: _vit(
        image_size=32, patch_size=4, num_classes=10, embed_dim=128, depth=9, num_heads=4, mlp_ratio=2.0, drop_path_rate=0.1
    ),
    "cvt-tiny": lambda: _cvt(_cvt_tiny_stages(), num_classes=10, image_size=32),
    # Chapter 5's controls for 32x32: cvt-tiny without convolutions, and a plain CNN.
    "cvt-tiny-linear": lambda: _cvt_linear(_cvt_tiny_stages(), num_classes=10, image_size=32),
    # ResNet-20 (He et al. 2016, Sec. 4.2): n = 3 basic blocks per stage, 16-32-64 channels, option-B shortcuts.
    "resnet-20": lambda: ("resnet", ResNetConfig(widths=(16, 32, 64), blocks_per_stage=3, num_classes=10, image_size=32)),
    # Swin and PVT for 32x32: patches of 2 and three stages (16x16, 8x8, 4x4 token maps).
    # Swin: 4x4 windows, so stage 3 is one window (no shift there), as Swin-T's 7x7 stage 4.
    "swin-tiny": lambda: _swin(48, (2, 2, 2), (3, 6, 12), window_size=4, image_size=32, patch_size=2, num_classes=10,
                               drop_path_rate=0.1),
    # PVT: reduction ratios 4-2-1 give 4x4 keys and values in every stage, as 8-4-2-1 give 7x7 in PVT-Tiny.
    "pvt-tiny": lambda: _pvt(
        [
            PVTStageConfig(embed_dim=48, depth=2, num_heads=1, mlp_ratio=4.0, sr_ratio=4, patch_size=2),
            PVTStageConfig(embed_dim=96, depth=2, num_heads=2, mlp_ratio=4.0, sr_ratio=2, patch_size=2),
            PVTStageConfig(embed_dim=160, depth=2, num_heads=5, mlp_ratio=4.0, sr_ratio=1, patch_size=2),
        ],
        image_size=32,
        num_classes=10,
        drop_path_rate=0.1,
    ),
    # ViT-Ti/S/B from DeiT (Touvron et al. 2021) and ViT (Table 1).
    "vit-ti16": lambda: _vit(embed_dim=192, depth=12, num_heads=3),
    "vit-s16": lambda: _vit(embed_dim=384, depth=12, num_heads=6),
    "vit-b16": lambda: _vit(embed_dim=768, depth=12, num_heads=12),
    "cvt-13": lambda: _cvt_imagenet((64, 192, 384), (1, 3, 6), (1, 2, 10)),
    "cvt-21": lambda: _cvt_imagenet((64, 192, 384), (1, 3, 6), (1, 4, 16)),
    "cvt-w24": lambda: _cvt_imagenet((192, 768, 1024), (3, 12, 16), (2, 2, 20)),
    # Swin-T (Liu et al. 2021, Sec. 3.3): C = 96, depths 2-2-6-2, M = 7; stochastic depth 0.2 (App. A2.1).
    "swin-t": lambda: _swin(96, (2, 2, 6, 2), (3, 6, 12, 24), window_size=7, drop_path_rate=0.2),
    # PVT-Tiny (Wang et al. 2021, Table 1); stochastic depth 0.1 as in its ImageNet training.
    "pvt-v1-tiny": lambda: _pvt(
        [
            PVTStageConfig(embed_dim=64, depth=2, num_heads=1, mlp_ratio=8.0, sr_ratio=8, patch_size=4),
            PVTStageConfig(embed_dim=128, depth=2, num_heads=2, mlp_ratio=8.0, sr_ratio=4, patch_size=2),
            PVTStageConfig(embed_dim=320, depth=2, num_heads=5, mlp_ratio=4.0, sr_ratio=2, patch_size=2),
            PVTStageConfig(embed_dim=512, depth=2, num_heads=8, mlp_ratio=4.0, sr_ratio=1, patch_size=2),
        ],
        drop_path_rate=0.1,
    ),
    # The pooling experiment (chapter 2): the same tiny models read by another pooling (cvt_edu.pooling).
    "vit-tiny-gap": lambda: _pooled("vit-tiny", "gap"),
    "vit-tiny-map": lambda: _pooled("vit-tiny", "map"),
    "cvt-tiny-gap": lambda: _pooled("cvt-tiny", "gap"),
}


def _pooled(name: str, pool: str) -> tuple[str, Any]:
    """Registry model ``name`` with another pooling; a CvT then has no [CLS] token in its last stage."""
    arch, config = MODELS[name]()
    if arch == "cvt":
        config = replace(config, stages=(*config.stages[:-1], replace(config.stages[-1], cls_token=False)))
    return arch, replace(config, pool=pool)


def list_models() -> list[str]:
    """Names accepted by :func:`build_model`."""
    return sorted(MODELS)


def model_config(name: str) -> tuple[str, Any]:
    """The architecture (a key of :data:`ARCHITECTURES`: ``"vit"``, ``"cvt"``, ``"resnet"``...) and config object of a named model.

    Raises:
        KeyError: for an unknown name, listing the known ones.
    """
    if name not in MODELS:
        raise KeyError(f"unknown model {name!r}; known models: {', '.join(list_models())}")
    return MODELS[name]()


def build_model(name: str, *, num_classes: int | None = None) -> nn.Module:
    """Build a freshly initialised model by name (see :func:`list_models`).

    Args:
        name: for example ``"vit-tiny"`` or ``"cvt-13"``.
        num_classes: replaces the config's number of classes when given.

    Raises:
        KeyError: for an unknown name.
    """
    arch, config = model_config(name)
    d = config_to_dict(config)
    if num_classes is not None:
        d["num_classes"] = num_classes
    return model_from_config(arch, d)


def config_to_dict(config: Any) -> dict[str, Any]:
    """A JSON-ready dict of a model config (inverse of :func:`model_from_config`)."""
    return asdict(config)


def model_from_config(arch: str, config: dict[str, Any]) -> nn.Module:
    """Rebuild a model from its architecture name and config dict, as saved in ``config.json``.

    The keys are checked against the config class (and, for CvT, Swin and PVT, every stage against the
    stage config class) before anything is built, so a misspelt or missing setting is one line.

    Raises:
        ValueError: for an unknown architecture (listing the known ones), a config or stage that is not a
            dict, unknown keys or missing required keys (naming them and listing the accepted ones), or a
            setting the model's constructor refuses.
    """
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {arch!r}; expected one of {sorted(ARCHITECTURES)}")
    cls, config_cls = ARCHITECTURES[arch]
    _check_keys(config, config_cls, f"a {arch} model_config")
    if arch in STAGE_CONFIGS:
        stages = config["stages"]
        if not isinstance(stages, (list, tuple)) or not stages:
            raise ValueError(f"a {arch} model_config needs 'stages', a non-empty list of dicts; got {stages!r}")
        for i, stage in enumerate(stages):
            if not isinstance(stage, STAGE_CONFIGS[arch]):
                _check_keys(stage, STAGE_CONFIGS[arch], f"stage {i + 1} of a {arch} model_config")
    return cls(config_cls(**config))


def _check_keys(config: Any, config_cls: type, what: str) -> None:
    """Raise one ValueError if ``config`` is not a dict of ``config_cls``'s fields with every required one."""
    if not isinstance(config, dict):
        raise ValueError(f"{what} must be a dict of settings, got {type(config).__name__} {config!r}")
    accepted = [f.name for f in fields(config_cls)]
    required = [f.name for f in fields(config_cls) if f.default is MISSING and f.default_factory is MISSING]
    unknown = [k for k in config if k not in accepted]
    missing = [k for k in required if k not in config]
    if unknown or missing:
        problems = ([f"has unknown keys {unknown}"] if unknown else []) + ([f"lacks the required keys {missing}"] if missing else [])
        raise ValueError(f"{what} {' and '.join(problems)}; accepted keys: {', '.join(accepted)}")


def arch_of(model: nn.Module) -> str:
    """The architecture name of a course model, its key in :data:`ARCHITECTURES` (``"vit"``, ``"cvt"``, ``"cvt-linear"``...).

    Raises:
        TypeError: for a model that is not one of :data:`ARCHITECTURES`.
    """
    for arch, (cls, _) in ARCHITECTURES.items():
        if type(model) is cls:
            return arch
    raise TypeError(f"{type(model).__name__} is not a cvt_edu model; expected one of {sorted(ARCHITECTURES)}")
