"""cvt_edu: the PyTorch package behind the CvT-edu course on Vision Transformers.

The folder tree is the course's table of contents. At the top, one concept per module, in the
order the chapters teach them: :mod:`~cvt_edu.patching` (patches and token embeddings),
:mod:`~cvt_edu.positional`, :mod:`~cvt_edu.attention` (MHSA, attention maps),
:mod:`~cvt_edu.projection` (linear and convolutional Q/K/V), :mod:`~cvt_edu.layers` (MLP,
stochastic depth), :mod:`~cvt_edu.windows` (Swin's window geometry), :mod:`~cvt_edu.flash` (tiled attention with the
online softmax), :mod:`~cvt_edu.pooling` ([CLS], GAP, MAP), the models
:mod:`~cvt_edu.vit`, :mod:`~cvt_edu.cvt`, :mod:`~cvt_edu.swin`, :mod:`~cvt_edu.pvt`, the convolutional
baseline :mod:`~cvt_edu.resnet` and their registry :mod:`~cvt_edu.models`. One level down, everything that serves them:
:mod:`~cvt_edu.train` (data, augmentation, the training loop, checkpoints),
:mod:`~cvt_edu.lab` (the chapters' experiments), :mod:`~cvt_edu.cost` (FLOPs, formulas,
sweeps, benchmarks), :mod:`~cvt_edu.pretrained` (outside weights), :mod:`~cvt_edu.trained`
(the course's own trained models, shipped), :mod:`~cvt_edu.viz` (every figure),
:mod:`~cvt_edu.course` (figure text in pt/es, quizzes), :mod:`~cvt_edu.tp` (the practical
assignments: check cells and the grader) and :mod:`~cvt_edu.cli`.

``import cvt_edu`` is cheap: the names below are imported on first use (PEP 562), so the command
line answers ``--help`` without loading PyTorch.
"""

import lazy_loader as _lazy

__version__ = "0.2.0"  # keep equal to pyproject.toml (tests/test_contents.py checks)

__getattr__, __dir__, __all__ = _lazy.attach(
    __name__,
    submodules=["attention", "cost", "course", "cvt", "flash", "lab", "layers", "models", "patching", "pooling", "positional",
                "pretrained", "projection", "pvt", "resnet", "swin", "tp", "train", "trained", "vit", "viz", "windows"],
    submod_attrs={
        "models": ["build_model", "list_models"],
        "pretrained.load": ["load_pretrained"],
        "trained.load": ["load_trained", "list_trained"],
        "train.checkpoint": ["load_checkpoint", "save_pretrained"],
        "train.data": ["load_data"],
        "train.config": ["TrainConfig"],
        "train.env": ["pick_device", "quick_mode", "run_folder", "seed_everything"],
        "train.loop": ["evaluate", "fit"],
        "train.run": ["train_and_record"],
        "course.i18n": ["t"],
        "course.quiz": ["load_quiz", "show_quiz"],
    },
)
__all__ += ["__version__"]
