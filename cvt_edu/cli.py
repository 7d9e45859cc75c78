"""Command line: ``python -m cvt_edu train|compare|evaluate|bench|cost|grade|experiment`` (also installed as ``cvt-edu``).

Only the chosen command's arguments are built, and each command imports what it needs when it
runs: ``cvt-edu --help`` lists the commands without loading PyTorch.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, fields
from pathlib import Path

COMMANDS = {
    "train": "train one model; writes metrics.json, model.safetensors, config.json, curves.png",
    "compare": "train several models under one budget; writes comparison.md and comparison.png",
    "evaluate": 'print {"accuracy": ..., "n": ...} of a checkpoint or a shipped trained model on the test split',
    "bench": "speed: cvt_edu CvT-13 vs transformers CvT-13 with the same weights; "
    "with --train, training throughput and MFU of the tiny models",
    "cost": "time, peak memory and FLOPs of ViT, CvT, Swin and PVT against resolution; writes cost.md, cost.json, cost.png",
    "grade": "grade TP notebooks (each in a fresh process, on hidden cases); writes grades.csv and one feedback file each",
    "experiment": "run the main experiment's plan (what is missing, --jobs at a time) and export each run's results JSON",
}


def _add_data(p: argparse.ArgumentParser) -> None:
    from .train.data import DATA_ENV

    p.add_argument(
        "--data",
        default=None,
        help=f"local CIFAR-10 folder (ImageFolder train/ and test/, or cifar-10-batches-py); "
        f"default: ${DATA_ENV}, else download CIFAR-10",
    )


def _add_training(p: argparse.ArgumentParser) -> None:
    from .train.config import POLICIES, TrainConfig
    from .train.env import QUICK_ENV

    _add_data(p)
    d = TrainConfig()
    p.add_argument("--epochs", type=int, default=d.epochs, help=f"training epochs (default {d.epochs})")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help=f"images per step (default {d.batch_size})")
    p.add_argument("--lr", type=float, default=d.lr, help=f"peak learning rate (default {d.lr})")
    p.add_argument("--seed", type=int, default=d.seed, help=f"random seed (default {d.seed})")
    p.add_argument("--augment", choices=POLICIES, default=d.augment, help=f"augmentation policy (default {d.augment})")
    p.add_argument("--mixup-alpha", type=float, default=d.mixup_alpha, help=f"MixUp Beta parameter, 0 = off (default {d.mixup_alpha})")
    p.add_argument("--cutmix-alpha", type=float, default=d.cutmix_alpha, help=f"CutMix Beta parameter, 0 = off (default {d.cutmix_alpha})")
    p.add_argument("--label-smoothing", type=float, default=d.label_smoothing, help=f"(default {d.label_smoothing})")
    p.add_argument("--warmup-epochs", type=float, default=d.warmup_epochs, help=f"linear warmup (default {d.warmup_epochs})")
    p.add_argument("--weight-decay", type=float, default=d.weight_decay, help=f"AdamW weight decay (default {d.weight_decay})")
    p.add_argument("--fast-path", action=argparse.BooleanOptionalAction, default=None,
                   help="hold the data on the device and augment batches there (default: on for CUDA only)")
    p.add_argument("--compile", action="store_true", help="torch.compile the model")
    p.add_argument("--device", default=None, help="cuda, mps or cpu (default: the best available)")
    p.add_argument("--num-workers", type=int, default=d.num_workers, help="data-loader workers")
    p.add_argument("--train-subset", type=int, default=None, help="train on this many images only")
    p.add_argument("--validation", type=float, default=d.validation,
                   help="hold out this fraction of the training images (stratified, fixed split seed) and evaluate on it; "
                        "the test split is not used (default 0 = off; the protocol's choices use 0.2)")
    p.add_argument("--quick", action="store_true", default=None, help=f"smoke run: 1 epoch, 512 images (also ${QUICK_ENV}=1)")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")


def _train_config(args: argparse.Namespace):
    from .train.config import TrainConfig

    names = {f.name for f in fields(TrainConfig)}
    values = {k: v for k, v in vars(args).items() if k in names}
    return TrainConfig(**values, progress=not args.no_progress)


def _add_train(p: argparse.ArgumentParser) -> None:
    from .models import list_models

    p.add_argument("--model", required=True, choices=list_models())
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--overwrite", action="store_true",
                   help="replace a run of another model or recipe in --out (default: refuse it; the same run is reused or resumed)")
    _add_training(p)


def _add_compare(p: argparse.ArgumentParser) -> None:
    from .models import list_models

    p.add_argument("--models", nargs="+", default=["vit-tiny", "cvt-tiny"], choices=list_models())
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--overwrite", action="store_true",
                   help="replace runs of another recipe in --out/<model> (default: refuse them; the same runs are reused or resumed)")
    _add_training(p)


def _add_bench(p: argparse.ArgumentParser) -> None:
    from .cost.bench import BenchConfig
    from .cost.bench_train import TrainBenchConfig
    from .models import list_models

    b, tb = BenchConfig(), TrainBenchConfig()
    p.add_argument("--train", action="store_true",
                   help="measure training of the tiny models under the small-data recipe (eager and compiled) instead")
    p.add_argument("--model", default=b.model, choices=["cvt-13", "cvt-21"], help="the CvT-13 race: which model")
    p.add_argument("--models", nargs="+", default=list(tb.models), choices=list_models(), help="--train: which models")
    p.add_argument("--modes", nargs="+", default=list(tb.modes), choices=["eager", "compiled"], help="--train: which modes")
    p.add_argument("--batch-size", type=int, default=None,
                   help=f"images per step (default {b.batch_size}; with --train, the recipe's)")
    p.add_argument("--image-size", type=int, default=b.image_size)
    p.add_argument("--steps", type=int, default=None, help=f"timed steps (default {b.steps}; with --train {tb.steps})")
    p.add_argument("--warmup", type=int, default=None, help=f"untimed steps first (default {b.warmup}; with --train {tb.warmup})")
    p.add_argument("--device", default=None, help="cuda or cpu (default: cuda when there is one)")
    p.add_argument("--threads", type=int, default=None, help="--train: CPU threads (default: torch's)")
    p.add_argument("--fast-path", action=argparse.BooleanOptionalAction, default=None,
                   help="--train: data on the device, batched augmentation (default: on for CUDA only)")
    p.add_argument("--bf16", action="store_true", help="bfloat16 autocast")
    p.add_argument("--compile", action="store_true", help="torch.compile both models")
    p.add_argument("--json", default=None, help="also write the measurements to this JSON file")


def _add_cost(p: argparse.ArgumentParser) -> None:
    from .cost.sweep import SWEEP_MODELS

    p.add_argument("--resolutions", type=int, nargs="+", default=[32, 64, 128, 224, 384, 512],
                   help="image sides in pixels, multiples of 16 (default: 32 64 128 224 384 512)")
    p.add_argument("--models", nargs="+", default=list(SWEEP_MODELS), choices=list(SWEEP_MODELS))
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--batch-size", type=int, default=1, help="images per forward pass (default 1)")
    p.add_argument("--device", default=None, help="cuda or cpu (default: cuda when there is one)")
    p.add_argument("--steps", type=int, default=3, help="timed forward passes per point; the median is kept (default 3)")
    p.add_argument("--time-limit", type=float, default=60.0,
                   help="seconds one forward pass may take before the model stops as 'timeout' (default 60)")
    p.add_argument("--memory-limit", type=float, default=None,
                   help="MiB one point may add before the model stops as 'OOM' (default: what the machine has)")
    p.add_argument("--threads", type=int, default=1, help="CPU threads per point (default 1; 0: torch's default)")
    p.add_argument("--fused-attention", action="store_true", help="measure the fused attention kernels, not the explicit path")


def _add_evaluate(p: argparse.ArgumentParser) -> None:
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--checkpoint", help="a folder with model.safetensors and config.json")
    which.add_argument("--trained", metavar="NAME", help="a trained model shipped with cvt_edu (cvt_edu.trained.list_trained())")
    p.add_argument("--device", default=None)
    _add_data(p)


def _add_grade(p: argparse.ArgumentParser) -> None:
    from .tp.assignments import TPS

    p.add_argument("--tp", type=int, required=True, choices=sorted(TPS), help="which TP: " + ", ".join(f"{n} {a.name}" for n, a in TPS.items()))
    p.add_argument("submissions", nargs="+", help="student notebooks (.ipynb) or folders of them")
    p.add_argument("--out", required=True, help="the CSV to write; feedback files go to the folder of the same stem beside it")
    p.add_argument("--time-limit", type=float, default=120.0, help="seconds each submission's code may run (default 120)")
    p.add_argument("--quick", action="store_true", help="two hidden cases per question instead of all")
    p.add_argument("--seed", type=int, default=None, help="seed of the hidden cases (default: drawn now, written in the feedback)")
    p.add_argument("--lang", choices=["pt", "es", "en"], default="pt",
                   help="feedback language where the notebook does not say (metadata cvt_edu.lang, folder pt/ or es/)")


def _add_experiment(p: argparse.ArgumentParser) -> None:
    p.add_argument("--runs", required=True, help="the runs folder: one folder per run (RUNS/headline/cvt-tiny/seed0) and its .log")
    p.add_argument("--results", required=True, help="where the results files go (RESULTS/headline/cvt-tiny/seed0.json), e.g. results/main")
    _add_data(p)
    p.add_argument("--only", default=None, help="only the runs whose name matches this shell pattern, e.g. 'headline/*' or '*cvt-tiny*'")
    p.add_argument("--jobs", type=int, default=2, help="runs at a time (default 2)")
    p.add_argument("--threads", type=int, default=1, help="CPU threads per run (default 1)")
    p.add_argument("--device", default=None, help="--device of every run (default: the best available)")
    p.add_argument("--quick", action="store_true", help="smoke test: every run with --quick (1 epoch, 512 images)")
    p.add_argument("--dry-run", action="store_true", help="print the plan, each run's estimated time and status, and run nothing")


def _experiment(args: argparse.Namespace) -> int:
    from .lab.experiment import run_experiment
    from .lab.plan import main_plan
    from .train.data import resolve_data_path

    data = resolve_data_path(args.data)
    if data is None:
        raise ValueError("experiment: expected --data PATH (or $CVT_EDU_DATA), a local data folder every run reads")
    if not data.is_dir():
        raise FileNotFoundError(f"experiment: expected a data folder, got {data}, which is not one")
    outcomes = run_experiment(main_plan(), args.runs, args.results, data, only=args.only, jobs=args.jobs, threads=args.threads,
                              device=args.device, quick=args.quick, dry_run=args.dry_run)
    failed = [name for name, outcome in outcomes.items() if outcome.startswith("failed")]
    if not args.dry_run:
        print(f"{sum(o == 'exported' for o in outcomes.values())} exported, {sum(o.startswith('skipped') for o in outcomes.values())} "
              f"skipped, {len(failed)} failed" + (f": {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


def _grade(args: argparse.Namespace) -> int:
    from .tp.assignments import TPS
    from .tp.grader import grade

    rows = grade(args.tp, args.submissions, args.out, time_limit=args.time_limit, quick=args.quick, seed=args.seed, lang=args.lang)
    for row in rows:
        print(f"{row['file']}: {sum(row['points'].values()):g} / {TPS[args.tp].max_points:g}")
    print(f"wrote {args.out} and {len(rows)} feedback files in {Path(rows[0]['feedback']).parent}")
    return 0


ARGUMENTS = {"train": _add_train, "compare": _add_compare, "evaluate": _add_evaluate, "bench": _add_bench, "cost": _add_cost,
             "grade": _add_grade, "experiment": _add_experiment}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser; only ``command``'s arguments are added (``None``: the list of commands alone, for ``--help``)."""
    parser = argparse.ArgumentParser(prog="cvt-edu", description="CvT-edu: train and compare tiny ViT and CvT on CIFAR-10.")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, summary in COMMANDS.items():
        p = sub.add_parser(name, help=summary, description=summary)
        if name == command:
            ARGUMENTS[name](p)
    return parser


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse ``argv`` (default ``sys.argv[1:]``): the first word that is a command decides which arguments exist."""
    argv = sys.argv[1:] if argv is None else list(argv)
    command = next((a for a in argv if a in COMMANDS), None)
    return build_parser(command).parse_args(argv)


def _cost(args: argparse.Namespace) -> int:
    from .cost.sweep import resolution_sweep, sweep_table, write_sweep

    settings = dict(
        batch_size=args.batch_size,
        device=args.device,
        steps=args.steps,
        time_limit_s=args.time_limit,
        memory_limit_mib=args.memory_limit,
        fused_attention=args.fused_attention,
        num_threads=args.threads or None,
    )
    rows = resolution_sweep(args.models, args.resolutions, **settings)
    device = next((r["device"] for r in rows if r.get("device")), "?")
    header = (
        f"# Forward-pass cost against resolution\n\nBatch {args.batch_size}, median of {args.steps} passes, "
        f"{'fused' if args.fused_attention else 'explicit'} attention, on {device}; "
        f"time limit {args.time_limit:g} s, memory limit {f'{args.memory_limit:g} MiB' if args.memory_limit else 'none'}."
    )
    settings = {"models": args.models, "resolutions": sorted(args.resolutions), **settings}
    paths = write_sweep(rows, args.out, header=header, settings=settings)
    print(sweep_table(rows))
    print(f"wrote {paths['md']}, {paths['json']} and {paths['png']}")
    return 0


def _bench(args: argparse.Namespace) -> str:
    from .cost.bench import BenchConfig
    from .cost.bench import main as bench_main
    from .cost.bench_train import TrainBenchConfig, run_train_bench, train_bench_table
    from .train.checkpoint import write_json

    given = {k: v for k, v in vars(args).items() if v is not None}
    if not args.train:
        names = {f.name for f in fields(BenchConfig)}
        return bench_main(BenchConfig(**{k: v for k, v in given.items() if k in names}), args.json)
    names = {f.name for f in fields(TrainBenchConfig)}
    cfg = TrainBenchConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in given.items() if k in names})
    rows = run_train_bench(cfg)
    if args.json:
        write_json(args.json, {"config": asdict(cfg), "rows": rows})
    return train_bench_table(rows)


def main(argv: list[str] | None = None) -> int:
    """Run one command; returns the exit status (2 with one line on stderr for a user's mistake)."""
    args = parse_args(argv)
    try:
        if args.command == "evaluate":
            from .train.checkpoint import load_checkpoint
            from .train.data import check_checkpoint_classes, load_split, resolve_data_path
            from .train.env import pick_device
            from .train.loop import evaluate

            if args.trained is not None:  # a shipped model: the same evaluation, its labels from its record
                from .trained.load import load_trained, trained_folder

                model, record = load_trained(args.trained)
                checkpoint, classes = trained_folder(args.trained), list(record.labels)
            else:
                model, config = load_checkpoint(args.checkpoint)
                checkpoint, classes = args.checkpoint, config.get("classes")
            test = load_split("test", args.data)
            source = str(resolve_data_path(args.data) or "the downloaded CIFAR-10")
            check_checkpoint_classes(test, classes, model.config.num_classes, checkpoint=checkpoint, data=source)
            model.to(pick_device(args.device))
            result = evaluate(model, test)
            print(json.dumps({"accuracy": result["accuracy"], "n": result["n"]}))
            return 0
        if args.command == "bench":
            print(_bench(args))
            return 0
        if args.command == "cost":
            return _cost(args)
        if args.command == "grade":
            return _grade(args)
        if args.command == "experiment":
            return _experiment(args)
        from .lab.compare import compare, train_model
        from .train.data import load_data
        from .train.run import check_run_folder

        cfg = _train_config(args)
        check_run_folder(args.out)  # a folder no training can use now is refused before the data loads
        data = load_data(args.data)
        if args.command == "train":
            m = train_model(args.model, data, cfg, args.out, quick=args.quick, overwrite=args.overwrite)
            ev = "val_accuracy" if cfg.validation else "test_accuracy"
            print(json.dumps({"model": args.model, ev: m[ev], "seconds": round(m["seconds"], 1), "out": args.out}))
        else:
            results = compare(args.models, data, cfg, args.out, quick=args.quick, overwrite=args.overwrite)
            ev = "val_accuracy" if cfg.validation else "test_accuracy"
            for name, m in results.items():
                print(json.dumps({"model": name, ev: m[ev], "seconds": round(m["seconds"], 1)}))
            print(f"wrote {args.out}/comparison.md" + ("" if cfg.validation else f" and {args.out}/comparison.png"))
        return 0
    except (FileNotFoundError, ValueError, KeyError) as e:
        print(f"cvt-edu {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
