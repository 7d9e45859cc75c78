"""cvt_edu: the PyTorch package behind the CvT-edu course on Vision Transformers.

One concept per module: :mod:`~cvt_edu.patching` (patches and token embeddings),
:mod:`~cvt_edu.positional` (positional embeddings), :mod:`~cvt_edu.patch_viz` (pictures of patches),
:mod:`~cvt_edu.projection` (linear and convolutional Q/K/V projections),
:mod:`~cvt_edu.attention` (multi-head attention and attention maps),
:mod:`~cvt_edu.vit`, :mod:`~cvt_edu.cvt`, :mod:`~cvt_edu.swin` and :mod:`~cvt_edu.pvt`
(the models), :mod:`~cvt_edu.models` (the registry), :mod:`~cvt_edu.pretrained` (Hugging Face
and torchvision weights in the course's models), :mod:`~cvt_edu.data`, :mod:`~cvt_edu.train`,
:mod:`~cvt_edu.cost` and :mod:`~cvt_edu.scaling` (FLOPs, attention cost, resolution sweep),
:mod:`~cvt_edu.plots`, :mod:`~cvt_edu.experiment`, :mod:`~cvt_edu.bench`, :mod:`~cvt_edu.quiz`,
:mod:`~cvt_edu.i18n`, :mod:`~cvt_edu.cli`; and the figures of the chapters:
:mod:`~cvt_edu.patch_viz`, :mod:`~cvt_edu.positional`, :mod:`~cvt_edu.attention_viz`,
:mod:`~cvt_edu.viz_embedding`, :mod:`~cvt_edu.shift`, :mod:`~cvt_edu.ablation`,
:mod:`~cvt_edu.window_viz`, :mod:`~cvt_edu.pyramid_viz` and :mod:`~cvt_edu.transfer`.
"""

from .checkpoint import load_checkpoint, save_pretrained
from .models import build_model, list_models
from .pretrained import load_pretrained

__version__ = "0.1.0"
__all__ = ["build_model", "list_models", "load_checkpoint", "load_pretrained", "save_pretrained", "__version__"]
