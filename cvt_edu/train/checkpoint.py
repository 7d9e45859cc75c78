"""Saving and loading models: ``model.safetensors`` plus ``config.json``, and the trainer state
(``trainer_state.pt``) a run resumes from; always written atomically.

A file is first written to a temporary name in the same folder, then moved over the
final name with ``os.replace``, so a reader never sees half a file, even if training
is killed mid-write.

``config.json`` carries a ``format_version`` (:data:`FORMAT_VERSION`). Checkpoints without one were
written before the package's redesign (version 1); :func:`load_checkpoint` still reads them, renaming
their weights (:func:`migrate_state_dict`) and rewriting their config (:func:`migrate_config`):

- W^Q, W^K, W^V moved into each block's attention module: ViT ``blocks.{i}.qkv.q`` ->
  ``blocks.{i}.attn.qkv.q``; CvT ``...blocks.{j}.qkv.linear.q`` -> ``...blocks.{j}.attn.qkv.q`` and
  ``...blocks.{j}.qkv.conv_q`` -> ``...blocks.{j}.attn.qkv.conv_q`` (likewise k, v);
- W^O has one path, ``attn.mha.proj``: ViT's and CvT's ``attn.proj`` moved there (Swin's and PVT's
  names did not change);
- Swin's and PVT's per-stage lists (``depths``, ``num_heads``, ``embed_dims``, ``sr_ratios``, ...)
  became one dict per stage under ``stages``, as CvT's.
"""

from __future__ import annotations

import json
import os
import pickle
import tempfile
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from ..models import ARCHITECTURES, arch_of, config_to_dict, model_from_config
from ..pretrained.renaming import Rule, rename_state_dict
from .env import rng_state

__all__ = [
    "FORMAT_VERSION",
    "atomic_path",
    "write_json",
    "save_pretrained",
    "load_checkpoint",
    "read_json_object",
    "read_weights",
    "check_weights",
    "migrate_config",
    "migrate_state_dict",
    "CheckpointError",
    "TRAINER_STATE",
    "save_trainer_state",
    "load_trainer_state",
]

WEIGHTS = "model.safetensors"
CONFIG = "config.json"
FORMAT_VERSION = 2  # 1: before the redesign (no format_version in config.json)

_BLOCK = r"(blocks\.\d+\.)"  # ViT's blocks
_STAGE_BLOCK = r"(stages\.\d+\.blocks\.\d+\.)"  # CvT's (and Swin's and PVT's) blocks
# Version 1 weight names -> version 2; each pattern matches only a version 1 name, the last rule keeps the rest.
V1_KEYS: list[Rule] = [
    (_BLOCK + r"qkv\.", r"\1attn.qkv."),
    (_BLOCK + r"attn\.proj\.", r"\1attn.mha.proj."),
    (_STAGE_BLOCK + r"qkv\.linear\.", r"\1attn.qkv."),
    (_STAGE_BLOCK + r"qkv\.", r"\1attn.qkv."),
    (_STAGE_BLOCK + r"attn\.proj\.", r"\1attn.mha.proj."),
    ("", ""),
]
# Version 1 Swin and PVT configs: per-stage list -> stage field, and settings every stage now carries.
_V1_STAGE_LISTS = {
    "swin": {"depths": "depth", "num_heads": "num_heads"},
    "pvt": {"embed_dims": "embed_dim", "depths": "depth", "num_heads": "num_heads", "mlp_ratios": "mlp_ratio",
            "sr_ratios": "sr_ratio", "patch_sizes": "patch_size"},
}
_V1_STAGE_SHARED = {
    "swin": ("window_size", "mlp_ratio", "qkv_bias", "drop_rate", "attn_drop_rate"),
    "pvt": ("qkv_bias", "drop_rate", "attn_drop_rate"),
}

TRAINER_STATE = "trainer_state.pt"
# What save_trainer_state writes and resuming reads.
TRAINER_STATE_KEYS = frozenset({"key", "model", "optimizer", "scheduler", "scaler", "state", "rng"})


class CheckpointError(FileNotFoundError):
    """A checkpoint folder lacks ``model.safetensors`` or ``config.json``."""


def _umask() -> int:
    mask = os.umask(0)  # the only way to read it is to set it
    os.umask(mask)
    return mask


def _fsync(path: str | os.PathLike, flags: int) -> None:
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success move it over ``path`` atomically and durably.

    The temporary is ``.<name>.<random>.tmp`` in the same folder (a run folder's lock removes the
    ones a killed process left, see :func:`cvt_edu.train.run.lock_run_folder`). On success its
    contents are flushed to disk (``fsync``), it gets the mode ``open()`` would have given
    (``0o666`` less the umask, not ``mkstemp``'s ``0o600``), it replaces ``path`` (``os.replace``),
    and the folder's entry is flushed too, so that after a crash ``path`` is the old file or the
    whole new one. On an exception the temporary file is removed and ``path`` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())
        _fsync(tmp, os.O_RDWR)
        os.replace(tmp, path)
        if os.name == "posix":  # a folder cannot be opened for fsync on Windows
            _fsync(path.parent, os.O_RDONLY)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_json(path: str | os.PathLike, data: Any) -> None:
    """Write ``data`` as indented JSON, atomically.

    Raises:
        ValueError: for a NaN or infinite number, which strict JSON has no way to write (nothing is written).
    """
    text = json.dumps(data, indent=2, allow_nan=False) + "\n"
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def save_pretrained(model: nn.Module, folder: str | os.PathLike, **extra: Any) -> None:
    """Save a course model as ``folder/model.safetensors`` and ``folder/config.json`` (with :data:`FORMAT_VERSION`).

    Args:
        model: a course model, one of :data:`~cvt_edu.models.ARCHITECTURES` (ViT, CvT, Swin, PVT).
        folder: created if missing.
        **extra: more JSON-ready fields for ``config.json`` (model name, class names, ...).
    """
    folder = Path(folder)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    with atomic_path(folder / WEIGHTS) as tmp:
        save_file(state, str(tmp))
    config = {"format_version": FORMAT_VERSION, "arch": arch_of(model), "model_config": config_to_dict(model.config)}
    write_json(folder / CONFIG, {**config, **extra})


def migrate_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename the weights of a course model saved before the redesign (format version 1) to today's names.

    Names that are already current are kept (the rules of :data:`V1_KEYS` match version 1 names
    only), so it is safe on a state dict of either version.

    Args:
        state: name -> tensor, as ``model.state_dict()`` of a ViT, CvT, Swin or PVT.

    Returns:
        The same tensors under version 2 names.
    """
    return rename_state_dict(state, V1_KEYS, "cvt_edu version 1")


def migrate_config(arch: str, model_config: dict[str, Any]) -> dict[str, Any]:
    """Rewrite a version 1 model config dict in today's layout (a copy; a current one comes back unchanged).

    Version 1 Swin and PVT configs held one list per setting (``depths``, ``num_heads``, ...; Swin's
    width ``embed_dim`` doubling per stage); version 2 holds one dict per stage under ``stages``.
    ViT and CvT configs did not change.

    Raises:
        ValueError: if ``model_config`` is not a dict, or a version 1 config lacks ``depths``, holds a
            per-stage setting that is not a list, or lists of different lengths (naming them).
    """
    if not isinstance(model_config, dict):
        raise ValueError(f"a {arch} model_config must be a dict of settings, got {type(model_config).__name__}")
    config = dict(model_config)
    if arch not in _V1_STAGE_LISTS or "stages" in config:
        return config
    if "depths" not in config:
        raise ValueError(f"a {arch} model_config needs 'stages' (or, written before cvt_edu 0.2, 'depths'); it has neither")
    not_lists = [old for old in _V1_STAGE_LISTS[arch] if old in config and not isinstance(config[old], list)]
    if not_lists:
        raise ValueError(f"a version 1 {arch} config holds one list per stage setting; {not_lists} are not lists")
    lists = {new: list(config.pop(old)) for old, new in _V1_STAGE_LISTS[arch].items() if old in config}
    lengths = {name: len(values) for name, values in lists.items()}
    if len(set(lengths.values())) != 1:
        raise ValueError(f"a version 1 {arch} config needs one entry per stage in every list, got lengths {lengths}")
    shared = {name: config.pop(name) for name in _V1_STAGE_SHARED[arch] if name in config}
    stages = [{**shared, **{name: values[i] for name, values in lists.items()}} for i in range(len(lists["depth"]))]
    if arch == "swin":
        width = config.pop("embed_dim", 96)
        for i, stage in enumerate(stages):
            stage["embed_dim"] = width * 2**i
    return {**config, "stages": stages}


_JSON_TYPES = {dict: "object", list: "array", str: "string", int: "number", float: "number", bool: "true/false", type(None): "null"}


def read_json_object(path: str | os.PathLike) -> dict[str, Any]:
    """The JSON object (a dict) in ``path``, such as a ``config.json``.

    Raises:
        ValueError: if the file is not UTF-8 text, not valid JSON (giving the error's line and column), or
            valid JSON but not an object; the message names the file.
    """
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: expected a JSON object, but the file is not UTF-8 text (byte {e.start} is not)") from e
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: expected a JSON object, but it is not valid JSON: {e.msg} at line {e.lineno} column {e.colno}") from e
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object {{...}}, got a JSON {_JSON_TYPES.get(type(data), type(data).__name__)}")
    return data


def read_weights(path: str | os.PathLike, device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """The tensors of a ``.safetensors`` file (name -> tensor), on ``device``.

    Raises:
        ValueError: if the file is truncated or is not a safetensors file at all, naming the file.
    """
    try:
        return load_file(str(path), device=str(device))
    except SafetensorError as e:
        raise ValueError(f"{path}: expected a safetensors file of weights, but it is truncated or corrupt ({e})") from e


def check_weights(model: nn.Module, state: dict[str, torch.Tensor], path: str | os.PathLike, what: str) -> None:
    """Check that ``state`` holds exactly the tensors ``model`` has, with the same shapes, before loading it.

    ``load_state_dict`` would list every stray name (hundreds when the weights are another model's);
    this says it in one line: counts, and the first three names of each kind.

    Args:
        model: the model the weights are for.
        state: name -> tensor, as read from ``path``.
        path: the weights file, for the message.
        what: the model, for the message (``"a cvt model as config.json describes it"``).

    Raises:
        ValueError: if names are missing or left over, or a tensor has another shape than the model's.
    """
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        raise ValueError(
            f"{path}: expected the {len(expected)} weights of {what}, but the file's {len(state)} weights do not match: "
            f"{len(missing)} missing{_first(missing)}, {len(unexpected)} unexpected{_first(unexpected)}; "
            f"the weights and {CONFIG} come from different models"
        )
    wrong = [(k, tuple(state[k].shape), tuple(v.shape)) for k, v in expected.items() if state[k].shape != v.shape]
    if wrong:
        name, got, want = wrong[0]
        raise ValueError(
            f"{path}: {len(wrong)} of the {len(expected)} weights have another shape than in {what}, for example "
            f"{name}: {got} in the file, {want} in the model; the weights and {CONFIG} come from different models"
        )


def _first(names: list[str], n: int = 3) -> str:
    return f" ({', '.join(names[:n])}{', ...' if len(names) > n else ''})" if names else ""


def load_checkpoint(folder: str | os.PathLike, map_location: str | torch.device = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """Load a model saved by :func:`save_pretrained`, today or before the redesign (no ``format_version``).

    Everything is checked before the weights go into the model, and every problem is one line naming
    the file: ``config.json`` must be a JSON object with a known ``arch`` and a ``model_config`` of that
    architecture's settings; ``model.safetensors`` must be whole and hold exactly that model's weights.
    Nothing in the folder is changed.

    Returns:
        The model in eval mode, and the contents of ``config.json``; for a version 1 checkpoint
        migrated to version 2 (``format_version``, ``model_config`` in today's layout).

    Raises:
        CheckpointError: if either file is missing, naming the folder.
        ValueError: if ``config.json`` is not a JSON object, has a ``format_version`` newer than
            :data:`FORMAT_VERSION`, no or an unknown ``arch`` (listing the known ones), or a ``model_config``
            with unknown or missing keys (naming them); if ``model.safetensors`` is truncated or corrupt, or
            its weights are not the ones that model has (counting the missing and unexpected names).
    """
    folder = Path(folder)
    missing = [name for name in (WEIGHTS, CONFIG) if not (folder / name).is_file()]
    if missing:
        raise CheckpointError(f"{folder} is not a cvt_edu checkpoint: missing {', '.join(missing)}")
    config_path, weights_path = folder / CONFIG, folder / WEIGHTS
    config = read_json_object(config_path)
    version = config.get("format_version", 1)
    if type(version) is not int or version < 1:
        raise ValueError(f"{config_path}: expected format_version to be a whole number from 1 to {FORMAT_VERSION}, got {version!r}")
    if version > FORMAT_VERSION:
        raise ValueError(
            f"{config_path}: format_version {version} is newer than this cvt_edu reads ({FORMAT_VERSION}); update cvt_edu"
        )
    arch = config.get("arch")
    if not isinstance(arch, str) or arch not in ARCHITECTURES:
        got = "has no 'arch'" if "arch" not in config else f"has arch {arch!r}, which is not a cvt_edu architecture"
        raise ValueError(f"{config_path}: {got}; expected one of {', '.join(sorted(ARCHITECTURES))}")
    if not isinstance(config.get("model_config"), dict):
        raise ValueError(f"{config_path}: expected 'model_config', a JSON object of the {arch} model's settings, "
                         f"got {config.get('model_config')!r}")
    try:
        model_config = migrate_config(arch, config["model_config"]) if version < FORMAT_VERSION else config["model_config"]
        model = model_from_config(arch, model_config)
    except (TypeError, ValueError) as e:  # a setting the model refuses, such as a string where a number goes
        raise ValueError(f"{config_path}: cannot build the {arch} model it describes: {e}") from e
    state = read_weights(weights_path, map_location)
    if version < FORMAT_VERSION:
        config = {**config, "format_version": FORMAT_VERSION, "model_config": model_config}
        state = migrate_state_dict(state)
    check_weights(model, state, weights_path, f"a {arch} model as {CONFIG} describes it")
    model.load_state_dict(state)
    return model.eval(), config


def save_trainer_state(
    folder: str | os.PathLike,
    *,
    key: dict[str, Any],
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    scaler: torch.amp.GradScaler | None,
    progress: dict[str, Any],
) -> None:
    """Write ``folder/trainer_state.pt``: everything a run needs to continue exactly where it stopped.

    That is the weights, the optimizer's moments, the learning-rate schedule, the float16 gradient
    scaler, the run's progress, and every random state (:func:`cvt_edu.train.env.rng_state`),
    so that the resumed epochs draw the same batches and augmentations as an uninterrupted run.

    Args:
        folder: the run folder (created if missing).
        key: what identifies the run (its recipe, and whatever else the caller names); a run
            resumes only under the same key.
        model, optimizer, scheduler, scaler: the training objects (``scaler`` may be ``None``).
        progress: JSON-ready progress (epochs done, history, training seconds).
    """
    payload = {
        "key": key,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "scaler": scaler.state_dict() if scaler else None,
        "state": progress,
        "rng": rng_state(),
    }
    with atomic_path(Path(folder) / TRAINER_STATE) as tmp:
        torch.save(payload, tmp)


def load_trainer_state(folder: str | os.PathLike) -> dict[str, Any] | None:
    """The contents of ``folder/trainer_state.pt`` as :func:`save_trainer_state` wrote them (tensors on the CPU),
    or ``None`` if there is none.

    The file is read with ``torch.load(weights_only=True)``: tensors, numbers, strings and containers only.

    Raises:
        ValueError: if the file holds any other object (it is not unpickled, so nothing in it runs), is
            truncated or corrupt (not a whole zip archive, as ``torch.save`` writes), or is not the dict of
            :data:`TRAINER_STATE_KEYS`; the message names the file. The file is left as it is.
    """
    path = Path(folder) / TRAINER_STATE
    if not path.is_file():
        return None
    corrupt = f"{path}: expected a trainer state written by cvt_edu, but the file is truncated or corrupt"
    advice = "; delete it to train from scratch"
    if not zipfile.is_zipfile(path):  # a truncated file has lost the archive's directory, at its end
        raise ValueError(f"{corrupt} ({path.stat().st_size} bytes, not a whole zip archive as torch.save writes){advice}")
    # weights_only: tensors, numbers, strings and containers only; a planted object is refused, never run
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise ValueError(
            f"{path}: expected a trainer state of tensors and numbers, but it holds other objects, which are never "
            f"unpickled (written by another program, or by cvt_edu before 0.2); delete it to train from scratch"
        ) from e
    except (RuntimeError, EOFError) as e:  # damaged inside the archive
        raise ValueError(f"{corrupt} ({str(e).splitlines()[0] if str(e) else type(e).__name__}){advice}") from e
    lacking = sorted(TRAINER_STATE_KEYS - set(saved)) if isinstance(saved, dict) else sorted(TRAINER_STATE_KEYS)
    if lacking:
        raise ValueError(f"{path}: expected a trainer state with {', '.join(sorted(TRAINER_STATE_KEYS))}, but it lacks "
                         f"{', '.join(lacking)} (written by another program?); delete it to train from scratch")
    return saved
