"""What is disabled while a submission is graded: the ready-made implementations a TP asks students to write.

The grader's child process (:mod:`cvt_edu.tp.child`) first computes the expected outputs with the course's
modules, then calls :func:`install`, which replaces

- ``torch.nn.functional.scaled_dot_product_attention``, ``torch.nn.functional.multi_head_attention_forward``,
  ``torch.nn.MultiheadAttention`` and ``torch.nn``'s transformer layers;
- every function and class of ``cvt_edu``'s concept modules and models (all but :mod:`cvt_edu.course`,
  :mod:`cvt_edu.train` and this package), in the modules already imported, in ``sys.modules`` and behind
  ``cvt_edu``'s lazy attributes;
- ``timm`` and ``transformers`` (their Swin, PVT and ViT attention and window helpers included): an import
  of either, or of any of their modules, gets a stub module;

by stubs that raise :class:`ReadyMade` and note the call in :data:`CALLS` (so an answer that catches the
error still fails). A stub is a class, so ``class MyAttention(nn.MultiheadAttention)`` still defines, and
fails when called. :func:`uses_stub` finds the stubs a function refers to by name (an import it uses).
The check cells see the same helpers through :func:`cvt_edu.tp.check.run_case`'s call tracing instead.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import sys
import types
from dataclasses import replace
from pathlib import Path

__all__ = ["ReadyMade", "CALLS", "KEEP", "THIRD_PARTY", "stub", "StubModule", "install", "uses_stub", "stubbed_prefixes"]

KEEP = ("course", "train", "tp", "cli", "__main__")  # cvt_edu's parts that hold no answer
THIRD_PARTY = ("timm", "transformers")
CALLS: list[str] = []  # every stub called, in order (the grader reads it after each case)


class ReadyMade(RuntimeError):
    """Raised by a stub: the answer called a ready-made implementation, ``name``."""

    def __init__(self, name: str) -> None:
        super().__init__(f"{name} is disabled while a TP is graded")
        self.name = name


def stub(name: str) -> type:
    """A stand-in for ``name`` (a function or a class): calling it, or a subclass of it, raises :class:`ReadyMade`."""

    def __new__(cls, *args, **kwargs):
        CALLS.append(name)
        raise ReadyMade(name)

    return type(name.rsplit(".", 1)[-1], (), {"__new__": __new__, "__module__": __name__, "_tp_stub": name})


class StubModule(types.ModuleType):
    """A module whose every public attribute is a :func:`stub`; a package, so its submodules are stubs too."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.__path__ = []
        self._tp_stub = name

    def __getattr__(self, attr: str):
        if attr.startswith("__"):
            raise AttributeError(attr)
        value = stub(f"{self.__name__}.{attr}")
        setattr(self, attr, value)
        return value


class _StubFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def __init__(self, prefixes: tuple[str, ...]) -> None:
        self.prefixes = prefixes

    def matches(self, name: str) -> bool:
        return any(name == p or name.startswith(p + ".") for p in self.prefixes)

    def find_spec(self, name, path=None, target=None):
        return importlib.util.spec_from_loader(name, self, is_package=True) if self.matches(name) else None

    def create_module(self, spec):
        return StubModule(spec.name)

    def exec_module(self, module) -> None:
        pass


def stubbed_prefixes() -> tuple[str, ...]:
    """The module names :func:`install` stubs: ``cvt_edu``'s modules and subpackages but :data:`KEEP`, and :data:`THIRD_PARTY`."""
    root = Path(__file__).resolve().parents[1]
    names = {p.stem for p in root.glob("*.py")} | {p.parent.name for p in root.glob("*/__init__.py")}
    return tuple(f"cvt_edu.{n}" for n in sorted(names - set(KEEP) - {"__init__"})) + THIRD_PARTY


def _is_ours(value: object, prefixes: tuple[str, ...]) -> bool:
    module = getattr(value, "__module__", None)
    return callable(value) and isinstance(module, str) and any(module == p or module.startswith(p + ".") for p in prefixes)


def install() -> None:
    """Disable the ready-made implementations (see the module's docstring). For the grader's child process only:
    it cannot be undone."""
    import torch
    import torch.nn.functional as F

    for owner, attr, name in (
        (F, "scaled_dot_product_attention", "torch.nn.functional.scaled_dot_product_attention"),
        (F, "multi_head_attention_forward", "torch.nn.functional.multi_head_attention_forward"),
        (torch.nn, "MultiheadAttention", "torch.nn.MultiheadAttention"),
        (torch.nn.modules, "MultiheadAttention", "torch.nn.MultiheadAttention"),
        (torch.nn.modules.activation, "MultiheadAttention", "torch.nn.MultiheadAttention"),
        *((torch.nn, n, f"torch.nn.{n}") for n in ("Transformer", "TransformerEncoder", "TransformerEncoderLayer",
                                                    "TransformerDecoder", "TransformerDecoderLayer")),
    ):
        setattr(owner, attr, stub(name))

    prefixes = stubbed_prefixes()
    finder = _StubFinder(prefixes)
    for name, module in list(sys.modules.items()):
        if not finder.matches(name):
            continue
        for key, value in list(vars(module).items()):  # names other modules already hold (from .x import y)
            if _is_ours(value, prefixes) and not key.startswith("__"):
                setattr(module, key, stub(f"{name}.{key}"))
        sys.modules[name] = StubModule(name)
    for name, module in list(sys.modules.items()):  # parents' attributes: cvt_edu.windows, cvt_edu.build_model, ...
        if name.startswith("cvt_edu") and not finder.matches(name) and isinstance(module, types.ModuleType):
            for key, value in list(vars(module).items()):
                if isinstance(value, types.ModuleType) and finder.matches(value.__name__):
                    setattr(module, key, sys.modules[value.__name__])
                elif _is_ours(value, prefixes) and not key.startswith("__"):
                    setattr(module, key, stub(f"{value.__module__}.{key}"))
    sys.meta_path.insert(0, finder)

    questions = sys.modules.get("cvt_edu.tp.questions")
    if questions is not None:  # the references, which call the course modules or torch.softmax
        for name, q in list(questions.QUESTIONS.items()):
            questions.QUESTIONS[name] = replace(q, reference=stub(f"cvt_edu.tp.questions.{name}.reference"))
        for key in [k for k in vars(questions) if k.startswith("_ref_")]:
            setattr(questions, key, stub(f"cvt_edu.tp.questions.{key}"))


def _names(code: types.CodeType) -> set[str]:
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _names(const)
    return names


def uses_stub(fn: object) -> str | None:
    """The first stub (or stub module) that ``fn``'s code refers to through its globals, or ``None``."""
    code, env = getattr(fn, "__code__", None), getattr(fn, "__globals__", None)
    if code is None or env is None:
        return None
    for name in sorted(_names(code)):
        value = env.get(name)
        if value is not None and getattr(value, "_tp_stub", None):
            return value._tp_stub
    return None
