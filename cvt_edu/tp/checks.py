"""``check(question, fn)``: the check cells of a TP, and the comparison the grader shares.

:func:`check` runs the student's function on the question's public cases (fixed seeds) and compares
with the reference (:mod:`cvt_edu.tp.questions`). :func:`run_case` is one case: it calls the function
on copies of the inputs while tracing what it runs, so that a ready-made implementation is caught
(``torch.nn.functional.scaled_dot_product_attention`` and the fused kernels, ``torch.nn.MultiheadAttention``,
``cvt_edu``'s own modules, ``timm``, ``transformers``; softmax itself in the online-softmax questions), and,
for tiled attention, a tensor as large as the full score matrix. It returns ``None`` or a problem,
``{"key": ..., fields}``, which :func:`describe` turns into one line in the student's language:

- wrong shape: ``expected shape (2, 16, 48), got (2, 48, 16)``;
- wrong values: the first mismatching index, expected and got values, the max abs error, the
  tolerance and the question's hint;
- an exception inside the function: its type, message and line; ``NotImplementedError``:
  "not implemented yet".
"""

from __future__ import annotations

import math
import numbers
import os
import sys
import traceback
from pathlib import Path
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from . import stubs
from .questions import QUESTIONS, Question
from .text import LANGUAGES, t

__all__ = ["check", "run_case", "compare", "describe", "describe_inputs", "error_line"]

_ROOT = str(Path(__file__).resolve().parents[1]) + os.sep  # .../cvt_edu/
_ALLOWED = tuple(_ROOT + k for k in stubs.KEEP)  # cvt_edu's parts an answer may call
_OTHERS = tuple(f"{os.sep}{p}{os.sep}" for p in stubs.THIRD_PARTY)
# (module, qualname prefix, the name to report): torch's own attention and transformer layers
_TORCH_READY_MADE = (("torch.nn.modules.activation", "MultiheadAttention", "torch.nn.MultiheadAttention"),
                     ("torch.nn.modules.transformer", "Transformer", "torch.nn.Transformer"),
                     ("torch.nn.functional", "multi_head_attention_forward", "torch.nn.functional.multi_head_attention_forward"))
_OP_NAMES = {"scaled_dot_product": "torch.nn.functional.scaled_dot_product_attention", "softmax": "torch.softmax"}


class _Trace(TorchDispatchMode):
    """Record the first forbidden aten operator and the first tensor of at least ``limit`` elements."""

    def __init__(self, forbidden: tuple[str, ...], limit: int | None) -> None:
        super().__init__()
        self.forbidden, self.limit = forbidden, limit
        self.op: str | None = None
        self.big: tuple[int, ...] | None = None

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func._schema.name
        if self.op is None and any(f in name for f in self.forbidden):
            self.op = next(v for k, v in _OP_NAMES.items() if k in name)
        out = func(*args, **(kwargs or {}))
        if self.limit is not None and self.big is None:
            self.big = next((tuple(x.shape) for x in tree_leaves(out) if isinstance(x, torch.Tensor) and x.numel() >= self.limit), None)
        return out


def warm_up() -> None:
    """Enter the tracing once on a small operation, so that what PyTorch imports the first time a dispatch mode
    runs (seconds on a CPU, many more under the profile hook of :func:`run_case`) is not timed as the student's."""
    with _Trace((), None):
        torch.ones(2) + 1


def _ready_made_caller():
    """A profile hook that notes the first call into a ready-made implementation; returns (hook, found)."""
    found: list[str] = []

    def hook(frame, event, arg):
        if found:
            return
        if event == "call":
            file = frame.f_code.co_filename
            module = frame.f_globals.get("__name__", "?")
            qualname = getattr(frame.f_code, "co_qualname", frame.f_code.co_name)
            if (file.startswith(_ROOT) and not file.startswith(_ALLOWED)) or any(p in file for p in _OTHERS):
                found.append(f"{module}.{qualname}")
            for mod, prefix, name in _TORCH_READY_MADE:
                if module == mod and qualname.startswith(prefix):
                    found.append(name if prefix != "Transformer" else f"torch.nn.{qualname.split('.')[0]}")
        elif event == "c_call" and getattr(arg, "__name__", "") == "scaled_dot_product_attention":
            found.append("torch.nn.functional.scaled_dot_product_attention")

    return hook, found


def _clone(x: Any) -> Any:
    if isinstance(x, torch.Tensor):
        return x.clone()
    if isinstance(x, dict):
        return {k: _clone(v) for k, v in x.items()}
    if isinstance(x, (tuple, list)):
        return type(x)(_clone(v) for v in x)
    return x


def error_line(e: BaseException, file: str | None) -> str:
    """``Type: first line of the message`` and, where the traceback reaches ``file`` (the answer's), ``(line N)``."""
    message = str(e).strip().splitlines()[0] if str(e).strip() else ""
    text = f"{type(e).__name__}: {message}" if message else type(e).__name__
    lines = [f.lineno for f in traceback.extract_tb(e.__traceback__) if f.filename == file]
    return (text[:300] + (f" (line {lines[-1]})" if lines else "")).replace("\n", " ")


def run_case(q: Question, fn: Any, args: tuple, expected: Any) -> dict | None:
    """Call ``fn(*args)`` (on copies) and compare with ``expected``.

    Returns:
        ``None`` when the output is right, else a problem ``{"key": ..., fields}`` for :func:`describe`.
    """
    limit = q.full_matrix(args) if q.full_matrix else None
    trace = _Trace(q.forbidden_ops, limit)
    hook, found = _ready_made_caller()
    del stubs.CALLS[:]
    previous = sys.getprofile()
    sys.setprofile(hook)
    try:
        with trace:
            got = fn(*_clone(args))
    except NotImplementedError:
        return {"key": "not_implemented"}
    except (Exception, SystemExit) as e:  # noqa: BLE001 - any error of the student's code is reported, in one line
        if stubs.CALLS or found:
            return {"key": "ready_made", "name": (stubs.CALLS or found)[0]}
        return {"key": "raised", "error": error_line(e, getattr(getattr(fn, "__code__", None), "co_filename", None))}
    finally:
        sys.setprofile(previous)
    if stubs.CALLS or found or trace.op:
        return {"key": "ready_made", "name": (stubs.CALLS or found or [trace.op])[0]}
    if trace.big is not None:
        return {"key": "full_matrix", "shape": trace.big, "numel": math.prod(trace.big), "full": limit, "hint": True}
    return compare(expected, got, q)


def _shape(x: torch.Tensor) -> str:
    return str(tuple(x.shape))


def _number(x: Any) -> str:
    return f"{x:.6g}" if isinstance(x, float) else str(x)


def compare(expected: Any, got: Any, q: Question, path: str = "") -> dict | None:
    """``None`` if ``got`` matches ``expected`` (tensors within the question's tolerance, ints and bools exactly),
    else the first problem (``path``: where in a tuple output, e.g. ``"[0]"``)."""
    problem = {"path": path}
    if isinstance(expected, tuple):
        if not isinstance(got, (tuple, list)) or len(got) != len(expected):
            return problem | {"key": "wrong_type", "expected": ("a_tuple", len(expected)), "got": _kind(got)}
        for i, (e, g) in enumerate(zip(expected, got)):
            if (p := compare(e, g, q, f"{path}[{i}]")) is not None:
                return p
        return None
    if isinstance(expected, int):
        if isinstance(got, torch.Tensor) and got.numel() == 1 and not got.is_floating_point():
            got = int(got)
        if not isinstance(got, numbers.Integral) or isinstance(got, bool):
            return problem | {"key": "wrong_type", "expected": ("an_int",), "got": _kind(got)}
        return None if int(got) == expected else problem | {"key": "wrong_int", "expected": expected, "got": int(got), "hint": True}
    if not isinstance(got, torch.Tensor):
        return problem | {"key": "wrong_type", "expected": ("a_tensor",), "got": _kind(got)}
    if got.shape != expected.shape:
        return problem | {"key": "wrong_shape", "expected": _shape(expected), "got": _shape(got)}
    if got.dtype != expected.dtype:
        return problem | {"key": "wrong_dtype", "expected": str(expected.dtype), "got": str(got.dtype)}
    got = got.detach().cpu()
    if expected.is_floating_point():
        close = torch.isclose(got, expected, rtol=q.rtol, atol=q.atol)
        if bool(close.all()):
            return None
        index = tuple(int(i) for i in (~close).nonzero()[0])
        return problem | {"key": "wrong_value", "index": index, "expected": _number(expected[index].item()),
                          "got": _number(got[index].item()), "error": _number((got - expected).abs().max().item()),
                          "atol": f"{q.atol:g}", "rtol": f"{q.rtol:g}", "hint": True}
    differ = got != expected
    if not bool(differ.any()):
        return None
    index = tuple(int(i) for i in differ.nonzero()[0])
    return problem | {"key": "wrong_exact", "index": index, "expected": _number(expected[index].item()),
                      "got": _number(got[index].item()), "count": int(differ.sum()), "total": differ.numel(), "hint": True}


def _kind(x: Any) -> str:
    if isinstance(x, torch.Tensor):
        return f"tensor {_shape(x)}"
    if isinstance(x, (tuple, list)):
        return f"{type(x).__name__} of {len(x)}"
    return f"{type(x).__name__} {x!r}"[:80]


def describe_inputs(q: Question, args: tuple) -> str:
    """The inputs of a case in a few words: ``images (2, 3, 16, 16), patch_size=4``."""
    parts = []
    for name, value in zip(q.arg_names, args):
        if isinstance(value, torch.Tensor):
            parts.append(f"{name} {_shape(value)}")
        elif isinstance(value, dict):
            parts.append(f"{name} {{{len(value)} tensors}}")
        else:
            parts.append(f"{name}={value}")
    return ", ".join(parts)


def describe(q: Question, problem: dict, where: str, lang: str) -> str:
    """One line for ``problem`` (from :func:`run_case`), in ``lang``; ``where`` names the question and the case."""
    fields = dict(problem)
    key = fields.pop("key")
    if fields.pop("path", ""):
        where = f"{where}, output {problem['path']}"
    if fields.get("hint"):
        fields["hint"] = t(f"hint_{q.name}", lang)
    if key == "wrong_type":
        kind, *n = fields["expected"]
        fields["expected"] = t(kind, lang, n=n[0] if n else "")
    return t(key, lang, where=where, **fields)


def check(question: str, fn: Any, lang: str | None = None) -> None:
    """Check a TP answer on the question's public cases: the notebook's check cell, ``check("patchify", patchify)``.

    Args:
        question: the question's name, e.g. ``"patchify"`` (see :data:`cvt_edu.tp.TPS`).
        fn: the student's function.
        lang: ``"pt"``, ``"es"`` or ``"en"``; ``None``: the notebook's language
            (:func:`cvt_edu.course.i18n.notebook_language`).

    Returns:
        ``None`` when every case is right (and prints one line saying so).

    Raises:
        AssertionError: at the first wrong case, with one line in ``lang``: the case's inputs, then the
            shape, dtype, first mismatching value (and the hint), the exception the function raised, "not
            implemented yet", or the ready-made implementation it used.
        ValueError: for an unknown question or language.
    """
    if lang is None:
        from ..course.i18n import notebook_language

        lang = notebook_language()
    if lang not in LANGUAGES:
        raise ValueError(f"no TP messages in language {lang!r}; expected one of {list(LANGUAGES)}")
    if question not in QUESTIONS:
        raise ValueError(t("unknown_question", lang, question=question, known=", ".join(QUESTIONS)))
    q = QUESTIONS[question]
    if not callable(fn):
        raise AssertionError(t("not_callable", lang, question=question, got=_kind(fn)))
    cases = q.cases()
    for i, args in enumerate(cases, 1):
        problem = run_case(q, fn, args, q.reference(*args))
        if problem is not None:
            where = t("case", lang, question=question, i=i, n=len(cases), inputs=describe_inputs(q, args))
            raise AssertionError(describe(q, problem, where, lang))
    print(t("ok", lang, question=question, n=len(cases)))
