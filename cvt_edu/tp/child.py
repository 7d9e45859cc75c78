"""The grader's child process: one submission, graded in a fresh Python process of its own.

``python -m cvt_edu.tp.child JOB RESULT READY`` (started by :func:`cvt_edu.tp.grader.grade`, in an empty
temporary folder). JOB is a JSON file: ``{"tp", "seed", "quick", "lang", "cells"}``, ``cells`` the answer cells
that compile, as ``[number, source]`` (the grader reports the others' syntax errors). In order:

1. draw the hidden cases from ``seed`` and compute their expected outputs with the references;
2. disable the ready-made implementations (:func:`cvt_edu.tp.stubs.install`);
3. create the file READY (the grader's time limit for the student's code starts now);
4. run the answer cells, each compiled as ``<answer cell i>``, in one namespace that already holds what
   the TPs' other cells import (``torch``, ``nn``, ``F``, ``math``, ``np``, ``einops``, ``rearrange``,
   ``repeat``, ``reduce``), since only answer cells are run; an exception is noted and the other
   cells still run;
5. call each question's function on the hidden cases (:func:`cvt_edu.tp.checks.run_case`);
6. write RESULT, JSON: per question ``{"passed", "n", "message"}`` (the first problem, in ``lang``), and
   ``"problems"``, the cells' errors.
"""

from __future__ import annotations

import builtins
import json
import os
import sys
from pathlib import Path


def _namespace() -> dict:
    import math

    import einops
    import numpy as np
    import torch
    from torch import nn
    from torch.nn import functional as F

    return {"__name__": "__answers__", "__builtins__": builtins, "torch": torch, "nn": nn, "F": F, "math": math, "np": np,
            "einops": einops, "rearrange": einops.rearrange, "repeat": einops.repeat, "reduce": einops.reduce}


def grade_cells(job: dict, ready: Path | None = None) -> dict:
    """Steps 1 to 5 above for ``job``; returns the result (see the module's docstring)."""
    import torch

    from . import stubs, text
    from .assignments import TPS
    from .checks import describe, describe_inputs, error_line, run_case, warm_up
    from .questions import QUESTIONS

    lang = job["lang"]
    text.table(lang)  # read before anything is disabled
    assignment = TPS[job["tp"]]
    hidden = {}
    with torch.no_grad():
        for name in assignment.questions:
            q = QUESTIONS[name]
            hidden[name] = (q, [(args, q.reference(*args)) for args in q.cases(seed=job["seed"], quick=job["quick"])])
    warm_up()
    stubs.install()
    if ready is not None:
        ready.touch()

    namespace = _namespace()
    problems = []
    for i, source in job["cells"]:
        file = f"<answer cell {i}>"
        try:
            code = compile(source, file, "exec")
        except SyntaxError as e:
            problems.append(text.t("syntax_error", lang, line=e.lineno, cell=i, message=e.msg))
            continue
        try:
            exec(code, namespace)
        except (Exception, SystemExit) as e:  # noqa: BLE001 - the student's cell: noted, the others still run
            problems.append(text.t("cell_raised", lang, cell=i, error=error_line(e, file)))

    results = {}
    for name, (q, cases) in hidden.items():
        fn, passed, message = namespace.get(name), 0, None
        if not callable(fn):
            message = text.t("not_defined", lang, question=name)
        elif (used := stubs.uses_stub(fn)) is not None:
            message = text.t("ready_made", lang, where=name, name=used)
        else:
            for i, (args, expected) in enumerate(cases, 1):
                problem = run_case(q, fn, args, expected)
                if problem is None:
                    passed += 1
                elif message is None:
                    where = text.t("case", lang, question=name, i=i, n=len(cases), inputs=describe_inputs(q, args))
                    message = describe(q, problem, where, lang)
                if problem is not None and problem["key"] == "ready_made":
                    passed = 0
                    break
        results[name] = {"passed": passed, "n": len(cases), "message": message}
    return {"questions": results, "problems": problems}


def main(argv: list[str]) -> int:
    job_path, result_path, ready_path = (Path(a) for a in argv)
    result = grade_cells(json.loads(job_path.read_text(encoding="utf-8")), ready_path)
    tmp = result_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(result), encoding="utf-8")
    os.replace(tmp, result_path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
