"""Ship a finished run as one of cvt_edu's trained models (cvt_edu/trained/<name>/), after checking its float16 copy.

    python tools/ship_trained.py RUN --data PATH [--name NAME] [--dest FOLDER] [--overwrite] [--device cpu]

RUN is a finished run folder of ``cvt-edu train``. The float32 run and its float16 copy are evaluated on the test
split of PATH; the model is shipped only if they are within 0.1 accuracy point and cvt_edu/trained stays within
25 MB (see :mod:`cvt_edu.trained.ship`). Prints the record as one JSON line; a refusal is one line on stderr, exit 2.
"""

from __future__ import annotations

import argparse
import json
import sys


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` and ship; returns the exit status (2 with one line on stderr when the run is refused)."""
    parser = argparse.ArgumentParser(prog="ship_trained", description=__doc__.splitlines()[0])
    parser.add_argument("run", help="a finished run folder (model.safetensors, config.json, metrics.json)")
    parser.add_argument("--data", default=None, help="the data folder the run learnt from (default: $CVT_EDU_DATA)")
    parser.add_argument("--name", default=None, help="the shipped name (default: the run's model name)")
    parser.add_argument("--dest", default=None, help="the folder of shipped models (default: $CVT_EDU_TRAINED, else cvt_edu/trained)")
    parser.add_argument("--overwrite", action="store_true", help="replace a model already shipped under that name")
    parser.add_argument("--device", default="cpu", help="where the two evaluations run (default cpu)")
    args = parser.parse_args(argv)

    from cvt_edu.trained.ship import ship_run

    try:
        record = ship_run(args.run, args.data, name=args.name, dest=args.dest, overwrite=args.overwrite, device=args.device)
    except (FileNotFoundError, ValueError, KeyError) as e:
        print(f"ship_trained: error: {e}", file=sys.stderr)
        return 2
    summary = {k: v for k, v in record.to_json().items() if k not in ("recipe", "sha256", "labels")}
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
