"""Train and record a run in its folder, with one rule for reusing, resuming and replacing it.

Every training of the course goes through :func:`train_and_record`: the registry models of
``cvt-edu train`` and chapters 2, 3 and 5 (:func:`cvt_edu.lab.compare.train_model`), the
variants of chapter 4 (:func:`cvt_edu.lab.ablation.train_config_model`) and the fine-tuning of
chapter 9 (:func:`cvt_edu.lab.transfer.finetune`). It seeds, builds the model (so that its
initial weights depend on the seed alone), trains it with :func:`cvt_edu.train.loop.fit`, and
writes to the run folder:

- ``model.safetensors`` and ``config.json``: the course model after the last finished epoch;
- ``trainer_state.pt``: what an interrupted run resumes from;
- ``metrics.json``: :func:`~cvt_edu.train.loop.fit`'s metrics, plus ``flops``, ``macs`` (one
  image), ``arch``, ``model_config``, ``quick`` and the run's ``key``; only a finished run has one.

The rule. A run is identified by its key (:func:`run_key`): the recipe
(:meth:`~cvt_edu.train.config.TrainConfig.recipe`, every setting but the runtime ones), the model's
architecture and config, and whatever else the caller names (fine-tuning: the image size and
where the starting weights came from). The key of the run a folder holds is read from its
``metrics.json`` (finished) or ``trainer_state.pt`` (interrupted). Keys are compared by one function,
:func:`same_run_key`, which lets a run saved before a setting existed stay the same run: a saved key
that lacks a recipe or model-config field whose value today is that field's default (``validation``
0.0, say) is the run of today's key; any other difference is another run.

- Same key: a finished run (all ``cfg.epochs`` done) is reused as it is, without training or
  evaluating again; an interrupted one resumes where it stopped, bit for bit.
- Another key (another model, recipe, number of epochs, ...), finished or interrupted, or run
  files whose key cannot be told: the folder is refused with a :class:`RunFolderError` that names
  what differs (``epochs 20 -> 30``, ``arch vit -> cvt``), unless ``overwrite=True``
  (``--overwrite``). Then the old run's files (:data:`RUN_FILES`) are removed, ``metrics.json``
  first, before anything trains; other files in the folder are left alone.

A folder is also kept whole while a run writes to it: the run holds an exclusive OS lock on the
folder (``flock``, released by the OS when the process ends, killed or not) from its first check
to its last file, and a second training on a locked folder is refused at once. Under the lock,
temporaries that a killed write left behind (``.<name>.*.tmp``, see
:func:`cvt_edu.train.checkpoint.atomic_path`) are removed. A folder that cannot be written (a file,
a read-only parent) is refused before any data is loaded or model trained.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import MISSING, asdict, fields, is_dataclass
from pathlib import Path
from typing import Any

from torch import nn

from ..cost.flops import count_flops
from ..models import ARCHITECTURES, STAGE_CONFIGS, arch_of, config_to_dict
from .checkpoint import CONFIG, TRAINER_STATE, WEIGHTS, load_checkpoint, load_trainer_state, write_json
from .config import TrainConfig
from .data import ImageTensors
from .env import pick_device, quick_mode, seed_everything
from .loop import METRICS, fit

try:
    import fcntl
except ImportError:  # Windows: no flock; runs are not locked there
    fcntl = None

__all__ = [
    "RUN_FILES",
    "RunFolderError",
    "run_key",
    "same_run_key",
    "finished_run",
    "key_differences",
    "check_run_folder",
    "lock_run_folder",
    "claim_run_folder",
    "train_and_record",
]

# The files of a run, in the order they are removed to replace it: metrics.json first, so that a kill
# part-way never leaves a finished run's metrics beside another model (curves.png: lab.compare.train_model's).
RUN_FILES = (METRICS, TRAINER_STATE, WEIGHTS, CONFIG, "curves.png")
_OVERWRITE_HINT = "pass overwrite=True (--overwrite on the command line) to replace it, or use another folder (--out)"
_HELD: dict[tuple[int, int], int] = {}  # the run folders this process has locked (device, inode) -> depth


class RunFolderError(ValueError):
    """A run folder that cannot be used: not writable, in use by another training, or holding another run."""


def run_key(cfg: TrainConfig, model: nn.Module, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """What identifies a run: ``{"recipe", "arch", "model_config", **extra}``, JSON-ready (tuples become lists).

    Args:
        cfg: the training config (its recipe counts, not its runtime settings).
        model: the course model as built for the run (ViT, CvT, Swin or PVT).
        extra: more JSON-ready settings that make the run what it is.
    """
    key = {"recipe": cfg.recipe(), "arch": arch_of(model), "model_config": config_to_dict(model.config), **(extra or {})}
    return json.loads(json.dumps(key))


def _field_defaults(cls: type) -> dict[str, Any]:
    """The JSON-ready defaults of a dataclass's fields that have one (tuples become lists)."""
    defaults = {}
    for f in fields(cls):
        if f.default is not MISSING:
            defaults[f.name] = f.default
        elif f.default_factory is not MISSING:
            defaults[f.name] = f.default_factory()
    return json.loads(json.dumps(defaults, default=lambda o: asdict(o) if is_dataclass(o) else str(o)))


def _fill(old: Any, new: Any, defaults: Mapping[str, Any]) -> Any:
    """``old`` with each field it lacks taken from ``new`` where ``new`` holds that field's default."""
    if not isinstance(old, dict) or not isinstance(new, dict):
        return old
    filled = dict(old)
    for name, value in new.items():
        if name not in filled and name in defaults and defaults[name] == value:
            filled[name] = value
    return filled


def _with_defaults(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """The saved key ``old`` completed with the fields of ``new`` it lacks whose value in ``new`` is the default.

    The defaults are :class:`TrainConfig`'s for ``recipe``, and for ``model_config`` those of the model config
    class of ``new``'s architecture (and of its stage config class for each stage), when both keys name it.
    """
    old = dict(old)
    if isinstance(old.get("recipe"), dict):
        old["recipe"] = _fill(old["recipe"], new.get("recipe"), _field_defaults(TrainConfig))
    arch = new.get("arch")
    if arch in ARCHITECTURES and old.get("arch") == arch and isinstance(old.get("model_config"), dict):
        config = _fill(old["model_config"], new.get("model_config"), _field_defaults(ARCHITECTURES[arch][1]))
        new_stages = (new.get("model_config") or {}).get("stages")
        if arch in STAGE_CONFIGS and isinstance(config.get("stages"), list) and isinstance(new_stages, list):
            stage_defaults = _field_defaults(STAGE_CONFIGS[arch])
            config["stages"] = [_fill(a, b, stage_defaults) for a, b in zip(config["stages"], new_stages)] + config["stages"][
                len(new_stages):]
        old["model_config"] = config
    return old


def same_run_key(saved: Any, key: Mapping[str, Any]) -> bool:
    """Whether a saved run key (read from ``metrics.json`` or ``trainer_state.pt``) names the run of ``key``.

    Equal keys are the same run; so is a saved key that lacks fields of ``key`` whose value in ``key`` is
    their dataclass default: :class:`~cvt_edu.train.config.TrainConfig`'s for the recipe, the model config
    class's (and its stage config class's) for ``model_config``. Such a key was written before the field
    existed, when every run had what is now its default. Any other difference (a value changed, a field
    missing whose value is not the default, a field the saved key has and ``key`` lacks) is another run.

    Args:
        saved: the key as saved (anything: a file edited by hand may hold a non-dict).
        key: today's key, from :func:`run_key`.
    """
    return isinstance(saved, dict) and _with_defaults(saved, key) == dict(key)


def finished_run(folder: str | os.PathLike, key: Mapping[str, Any], epochs: int) -> dict[str, Any] | None:
    """The metrics of the finished run in ``folder`` if it is the run of ``key`` (:func:`same_run_key`) with ``epochs``
    epochs and its model is there, else ``None``."""
    folder = Path(folder)
    if not (folder / METRICS).is_file() or not (folder / WEIGHTS).is_file():
        return None
    metrics = _read_metrics(folder)
    return metrics if metrics and same_run_key(metrics.get("key"), key) and metrics.get("epochs") == epochs else None


def _read_metrics(folder: Path) -> dict[str, Any] | None:
    """``folder/metrics.json`` as a dict, or ``None`` if it is not a JSON object (cut short or edited by hand)."""
    try:
        metrics = json.loads((folder / METRICS).read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    return metrics if isinstance(metrics, dict) else None


_ABSENT = object()


def _show(value: Any) -> str:
    if value is _ABSENT:
        return "(none)"
    text = value if isinstance(value, str) else json.dumps(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _differences(old: Any, new: Any, path: str) -> Iterator[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        for name in dict.fromkeys([*old, *new]):
            yield from _differences(old.get(name, _ABSENT), new.get(name, _ABSENT), f"{path}.{name}" if path else name)
    elif isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        for i, (a, b) in enumerate(zip(old, new)):
            yield from _differences(a, b, f"{path}[{i}]")
    elif old != new:
        yield f"{path} {_show(old)} -> {_show(new)}"


def key_differences(old: Mapping[str, Any], new: Mapping[str, Any], limit: int = 4) -> str:
    """What differs between two run keys (:func:`run_key`), in one short line.

    Recipe settings are named alone (``epochs 20 -> 30``), the rest by their path
    (``arch vit -> cvt``, ``model_config.stages[0].stride_kv 2 -> 1``); when the architecture
    differs, the model configs are not compared field by field. A field ``old`` lacks whose value in
    ``new`` is its default is no difference (see :func:`same_run_key`). At most ``limit`` differences are
    listed, then how many more there are.
    """
    old, new = _with_defaults(old, new), dict(new)
    if old.get("arch") != new.get("arch"):
        old.pop("model_config", None)
        new.pop("model_config", None)
    found = [d.removeprefix("recipe.") for d in _differences(old, new, "")]
    more = f" and {len(found) - limit} more" if len(found) > limit else ""
    return ", ".join(found[:limit]) + more if found else "no difference"


def _identity(st: os.stat_result) -> tuple[int, int]:
    return st.st_dev, st.st_ino


def _open_folder(folder: Path) -> int:
    try:
        return os.open(folder, os.O_RDONLY)
    except OSError as e:
        raise RunFolderError(f"cannot open the run folder {folder}: {e.strerror}") from e


def _check_writable(folder: Path) -> None:
    """Refuse a run folder that is a file, lies below a file, or cannot be written or created; creates nothing."""
    probe = folder
    while not probe.exists() and probe != probe.parent:  # the nearest part of the path that exists
        probe = probe.parent
    if not probe.is_dir():
        where = "is a file" if probe == folder else f"lies below {probe}, which is a file"
        raise RunFolderError(f"cannot use {folder} as a run folder: it {where}, not a folder")
    if not os.access(probe, os.W_OK | os.X_OK):
        if probe == folder:
            raise RunFolderError(f"cannot write in the run folder {folder}: no permission")
        raise RunFolderError(f"cannot create the run folder {folder}: no permission to write in {probe}")


def check_run_folder(folder: str | os.PathLike) -> None:
    """Refuse, at once and creating nothing, a run folder that no training could use now.

    What the command line calls before it loads the data; :func:`train_and_record` checks again
    under the lock (:func:`lock_run_folder`).

    Raises:
        RunFolderError: if ``folder`` is a file or below one, cannot be written or created, or is
            locked by another process's training.
    """
    folder = Path(folder)
    _check_writable(folder)
    if fcntl is None or not folder.is_dir():
        return
    fd = _open_folder(folder)
    try:
        if _identity(os.fstat(fd)) in _HELD:
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunFolderError(_in_use(folder)) from None
        fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _in_use(folder: Path) -> str:
    return f"{folder} is in use: another training holds its lock; wait for it to end, or use another folder (--out)"


@contextmanager
def lock_run_folder(folder: str | os.PathLike) -> Iterator[Path]:
    """Hold the run folder's exclusive lock for the ``with`` block; create the folder and clean it of stale temporaries.

    The lock is ``flock`` on the folder itself, so there is no lock file to go stale: the OS releases
    it when the process ends, however it ends. Nested calls on the same folder in one process hold it
    once (:func:`cvt_edu.lab.compare.train_model` holds it around :func:`train_and_record`). Under
    the lock, ``.<name>.*.tmp`` files (temporaries of :func:`~cvt_edu.train.checkpoint.atomic_path`
    that a killed process left) are removed. Without ``fcntl`` (Windows) nothing is locked.

    Yields:
        The folder, as a path.

    Raises:
        RunFolderError: if the folder cannot be used (see :func:`check_run_folder`) or another
            process holds its lock; nothing is created or changed then.
    """
    folder = Path(folder)
    _check_writable(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise RunFolderError(f"cannot create the run folder {folder}: {e.strerror}") from e
    fd = _open_folder(folder)
    try:
        ident = _identity(os.fstat(fd))
        if ident not in _HELD:
            if fcntl is not None:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    raise RunFolderError(_in_use(folder)) from None
            for stale in folder.glob(".?*.*.tmp"):
                if stale.is_file():
                    stale.unlink(missing_ok=True)
        _HELD[ident] = _HELD.get(ident, 0) + 1
        try:
            yield folder
        finally:
            _HELD[ident] -= 1
            if not _HELD[ident]:
                del _HELD[ident]
    finally:
        os.close(fd)  # releases the lock (the outermost holder's)


def _other_run(folder: Path, key: Mapping[str, Any], *, overwrite: bool) -> str | None:
    """What ``folder`` holds if it is not a run of ``key`` (a phrase for a message), or ``None``."""
    present = [name for name in RUN_FILES if (folder / name).is_file()]
    if not present:
        return None
    if METRICS in present:
        metrics = _read_metrics(folder)
        if metrics is None:
            return f"a {METRICS} that is not a JSON object, so it cannot tell which run the folder holds"
        old = metrics.get("key")
        if not isinstance(old, dict):
            return f"a finished run that {METRICS} gives no key for (written by an older cvt_edu)"
        if not same_run_key(old, key):
            return f"a finished run of another model or recipe ({key_differences(old, key)})"
    if TRAINER_STATE in present:
        try:
            saved = load_trainer_state(folder)
        except ValueError:
            if not overwrite:
                raise
            return f"a {TRAINER_STATE} that cannot be read"
        old = saved.get("key")
        if not same_run_key(old, key):
            done = saved.get("state", {}).get("epoch", "?")
            what = key_differences(old, key) if isinstance(old, dict) else "it has no key"
            return f"an interrupted run of another model or recipe, stopped after epoch {done} ({what})"
    if METRICS in present or TRAINER_STATE in present:
        return None
    return f"{', '.join(present)} but no {METRICS} or {TRAINER_STATE} that tells which run they belong to"


def claim_run_folder(folder: str | os.PathLike, key: Mapping[str, Any], *, overwrite: bool = False,
                     label: str = "run", verbose: bool = False) -> None:
    """Make ``folder`` ready for the run of ``key`` (see the module docstring's rule); call it under the lock.

    A folder holding nothing of a run, or a run of the same key, is left as it is. One holding
    another run is refused, or with ``overwrite`` emptied of that run's files (:data:`RUN_FILES`,
    ``metrics.json`` first).

    Raises:
        RunFolderError: for another run without ``overwrite``, naming the folder and what differs;
            nothing is changed then.
        ValueError: for a ``trainer_state.pt`` that cannot be read safely, without ``overwrite``.
    """
    folder = Path(folder)
    other = _other_run(folder, key, overwrite=overwrite)
    if other is None:
        return
    if not overwrite:
        raise RunFolderError(f"{folder} holds {other}; {_OVERWRITE_HINT}")
    for name in RUN_FILES:  # metrics.json first
        (folder / name).unlink(missing_ok=True)
    if verbose:
        print(f"{label}: replacing {other} in {folder} (overwrite)")


def train_and_record(
    build: Callable[[int], nn.Module],
    data: tuple[ImageTensors, ImageTensors],
    cfg: TrainConfig,
    out_dir: str | os.PathLike,
    *,
    name: str | None = None,
    wrap: Callable[[nn.Module], nn.Module] | None = None,
    extra: Mapping[str, Any] | None = None,
    quick: bool | None = None,
    overwrite: bool = False,
) -> tuple[nn.Module, dict[str, Any]]:
    """Seed, build a model, train it (or reuse or resume the run in ``out_dir``), and record the run there.

    The whole of it holds the folder's lock (:func:`lock_run_folder`); the folder is checked
    before the model is built, and claimed (:func:`claim_run_folder`) before anything trains.

    Args:
        build: ``num_classes -> model``, called right after seeding with one output per class
            of the data; returns a course model (ViT, CvT, Swin or PVT), the one that is saved.
        data: (train, test) splits of uint8 images (N, 3, H, W).
        cfg: the training config; shrunk with :meth:`~cvt_edu.train.config.TrainConfig.quick` in quick mode.
        out_dir: the run folder (created).
        name: the run's name in ``config.json``, ``metrics.json`` and messages.
        wrap: ``model -> module`` that is trained and measured instead of the model itself, e.g.
            :class:`cvt_edu.lab.transfer.ImageNetInput`; the model inside is still what is saved.
        extra: JSON-ready settings that belong to the run's key and to its metrics (e.g. ``image_size``).
        quick: quick mode; ``None`` reads ``$CVT_EDU_QUICK``.
        overwrite: replace a run of another key in ``out_dir`` instead of refusing it.

    Returns:
        The trained module (the model, or its wrapper) on the run's device in eval mode, and the
        metrics (see the module docstring) with ``reused``: True if a finished run was loaded.

    Raises:
        RunFolderError: if ``out_dir`` cannot be written, another training holds it, or it holds a
            run of another key and ``overwrite`` is false; the folder is left as it was.
        CheckpointError: if a finished run's folder lost its ``config.json``.
    """
    cfg = cfg.for_mode(quick)
    train, test = data
    out = Path(out_dir)
    with lock_run_folder(out):
        seed_everything(cfg.seed)  # the initial weights depend on the seed alone
        model = build(len(train.classes))
        trained = wrap(model) if wrap else model
        key = run_key(cfg, model, extra)
        label = name or type(model).__name__
        saved = finished_run(out, key, cfg.epochs)
        if saved is not None:
            model.load_state_dict(load_checkpoint(out)[0].state_dict())
            trained.to(pick_device(cfg.device)).eval()
            if cfg.progress:
                print(f"{label}: reusing the finished run in {out} ({cfg.epochs} epochs)")
            return trained, {**saved, "reused": True}
        claim_run_folder(out, key, overwrite=overwrite, label=label, verbose=cfg.progress)
        metrics = fit(trained, train, test, cfg, out_dir=out, name=name, key=key, course_model=model)
        metrics.update(count_flops(trained, (1, *train.images.shape[1:])))
        metrics.update(arch=key["arch"], model_config=key["model_config"], **(extra or {}), quick=quick_mode(quick), key=key)
        write_json(out / METRICS, metrics)
    return trained, {**metrics, "reused": False}
