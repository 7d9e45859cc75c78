"""Run the plan of the main experiment (:mod:`cvt_edu.lab.plan`): what is missing, a few jobs at a time, and export each result.

What ``cvt-edu experiment`` runs. Each run is a subprocess of ``cvt-edu train`` with one thread
(``OMP_NUM_THREADS``), writing its folder ``RUNS/<name>`` and its log ``RUNS/<name>.log``; a run that
was interrupted resumes from its checkpoint (the rule of :mod:`cvt_edu.train.run`), a finished one is
reused. As each run ends, its results file ``RESULTS/<name>.json`` is written
(:func:`cvt_edu.lab.results.export_run`), so that results can be committed run by run. A run whose
results file exists is skipped, and so is one that another process is training now (it holds the run
folder's lock); a model the registry does not have yet is skipped with one line.
"""

from __future__ import annotations

import fnmatch
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from .plan import PlannedRun, plan_table

__all__ = ["select", "run_status", "run_experiment"]


def select(plan: Sequence[PlannedRun], only: str | None) -> list[PlannedRun]:
    """The runs whose name matches the shell pattern ``only`` (``headline/*``, ``*cvt-tiny*``), or all of them."""
    return [r for r in plan if only is None or fnmatch.fnmatch(r.name, only)]


def run_status(run: PlannedRun, runs_dir: Path, results_dir: Path, known: set[str]) -> str:
    """What is there of ``run``: ``exported``, ``finished``, ``training now`` (another process holds the folder's lock),
    ``interrupted``, ``to run`` or ``no model yet``."""
    from ..train.run import RunFolderError, check_run_folder

    folder = runs_dir / run.name
    if run.model not in known:
        return "no model yet"
    if (results_dir / f"{run.name}.json").is_file():
        return "exported"
    if (folder / "metrics.json").is_file():
        return "finished"
    if (folder / "trainer_state.pt").is_file():
        try:
            check_run_folder(folder)  # takes the lock for an instant if no one holds it; writes nothing
        except RunFolderError:
            return "training now"
        return "interrupted"
    return "to run"


def _count_train_images(data: str | os.PathLike | None) -> int | None:
    """The training images of an ImageFolder data folder, counted without reading them (``None`` for another layout)."""
    train = Path(data) / "train" if data else None
    if train is None or not train.is_dir():
        return None
    return sum(1 for p in train.glob("*/*") if p.is_file())


def run_experiment(
    plan: Sequence[PlannedRun],
    runs_dir: str | os.PathLike,
    results_dir: str | os.PathLike,
    data: str | os.PathLike,
    *,
    only: str | None = None,
    jobs: int = 2,
    threads: int = 1,
    device: str | None = None,
    quick: bool = False,
    dry_run: bool = False,
    echo: Callable[[str], Any] = print,
) -> dict[str, str]:
    """Train the runs of ``plan`` that have no results file yet, ``jobs`` at a time, and export each as it ends.

    Args:
        plan: the runs (:func:`cvt_edu.lab.plan.main_plan`).
        runs_dir: where the run folders are (``RUNS/<name>``), and their logs (``RUNS/<name>.log``).
        results_dir: where the results files go (``RESULTS/<name>.json``).
        data: the data folder every run trains on (``--data``).
        only: a shell pattern on the runs' names; ``None``: every run.
        jobs: runs at a time (two on a two-core machine).
        threads: CPU threads of each run (``OMP_NUM_THREADS``, ``MKL_NUM_THREADS``).
        device: ``--device`` of each run (``None``: the best available).
        quick: ``--quick`` for each run (1 epoch, 512 training images): a smoke test of the plan.
        dry_run: print the plan with each run's estimated time and status, and run nothing.
        echo: where the lines go.

    Returns:
        ``{run name: outcome}``: ``exported``, ``skipped: ...``, ``failed: ...`` (the log's last line) or, in a
        dry run, the status.

    Raises:
        ValueError: for ``jobs`` or ``threads`` below 1, or an ``only`` that no run matches.
    """
    from ..models import list_models

    if jobs < 1 or threads < 1:
        raise ValueError(f"experiment: expected --jobs and --threads >= 1, got {jobs} and {threads}")
    runs_dir, results_dir = Path(runs_dir), Path(results_dir)
    runs = select(plan, only)
    if not runs:
        raise ValueError(f"experiment: no run of the plan matches --only {only!r}; its runs are named like {plan[0].name}")
    known = set(list_models())
    status = {r.name: run_status(r, runs_dir, results_dir, known) for r in runs}
    if dry_run:
        n_train = _count_train_images(data) or None
        table, total = plan_table(runs, status, **({"n_train": n_train} if n_train else {}))
        todo = sum(1 for s in status.values() if s in ("to run", "interrupted", "finished", "training now"))
        echo(table)
        echo(f"\n{len(runs)} runs ({todo} to train or export, {sum(s == 'no model yet' for s in status.values())} without a model yet); "
             f"estimated {total / 3600:.1f} core-hours for the runs with a measured speed (one thread each, evaluation excluded), "
             f"about {total / 3600 / jobs:.1f} h at --jobs {jobs}")
        return status
    outcomes: dict[str, str] = {}
    for r in runs:
        if status[r.name] == "no model yet":
            outcomes[r.name] = f"skipped: {r.model} is not in the model registry yet (cvt_edu.models)"
            echo(f"{r.name}: {outcomes[r.name]}")
        elif status[r.name] == "exported":
            outcomes[r.name] = "skipped: exported already"
        elif status[r.name] == "training now":
            outcomes[r.name] = f"skipped: another process is training it in {runs_dir / r.name}; run the experiment again when it ends"
            echo(f"{r.name}: {outcomes[r.name]}")
    todo = [r for r in runs if r.name not in outcomes]
    export_lock = threading.Lock()
    loaded: dict[str, Any] = {}

    def one(run: PlannedRun) -> None:
        folder, log = runs_dir / run.name, runs_dir / f"{run.name}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "cvt_edu", "train", *run.train_args(), "--out", str(folder), "--data", str(data), "--no-progress"]
        cmd += ["--device", device] if device else []
        cmd += ["--quick"] if quick else []
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads), "TQDM_DISABLE": "1"}
        echo(f"{run.name}: training ({' '.join(cmd[3:5])} ... --epochs {run.config().epochs}), log {log}")
        with open(log, "a", encoding="utf-8") as f:
            rc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, env=env).returncode
        if rc != 0:
            lines = log.read_text(encoding="utf-8", errors="replace").strip().splitlines()
            outcomes[run.name] = f"failed: exit {rc}: {lines[-1] if lines else 'no output'}"
            echo(f"{run.name}: {outcomes[run.name]}")
            return
        from .results import ResultsError, export_run

        with export_lock:
            if "data" not in loaded:
                import torch

                from ..train.data import load_data

                torch.set_num_threads(threads)
                loaded["data"] = load_data(data)
            try:
                export_run(folder, results_dir / f"{run.name}.json", data=loaded["data"], name=run.name)
            except ResultsError as e:
                outcomes[run.name] = f"failed: export: {e}"
                echo(f"{run.name}: {outcomes[run.name]}")
                return
        outcomes[run.name] = "exported"
        echo(f"{run.name}: done, wrote {results_dir / run.name}.json")

    def guarded(run: PlannedRun) -> None:
        try:
            one(run)
        except (OSError, ValueError, KeyError) as e:  # one run's problem (a log that cannot be written, bad data): the others go on
            outcomes[run.name] = f"failed: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
            echo(f"{run.name}: {outcomes[run.name]}")

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        list(pool.map(guarded, todo))
    return {r.name: outcomes[r.name] for r in runs}
