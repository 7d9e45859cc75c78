"""Practical assignments (TPs) that grade themselves.

Four TPs (:data:`~cvt_edu.tp.assignments.TPS`): ViT, CvT, Swin and efficient attention. A TP notebook
has *answer cells* (code cells tagged ``"answer"``) that define one function per question, each
followed by a check cell ``check("patchify", patchify)``.

- :mod:`.assignments`: the TPs, their questions and points (no PyTorch import).
- :mod:`.questions`: per question, how to draw its inputs, the reference (the course's own modules,
  with the given weights loaded), the tolerance.
- :mod:`.checks`: :func:`check`, the public cases a student runs in the notebook, and the comparison
  that the grader shares.
- :mod:`.grader`: the grader behind ``python -m cvt_edu grade``; each submission runs in a fresh
  Python process (:mod:`.child`) after :mod:`.stubs` has disabled ready-made implementations.
- :mod:`.text`: the messages, in the student's language (``strings/{pt,es,en}.json``).
"""

import lazy_loader as _lazy

__getattr__, __dir__, __all__ = _lazy.attach(
    __name__,
    submodules=["assignments", "checks", "child", "grader", "questions", "stubs", "text"],
    submod_attrs={"assignments": ["TPS", "Assignment"], "checks": ["check"], "grader": ["grade"]},
)
