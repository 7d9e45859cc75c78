"""cvt_edu: the PyTorch package behind the CvT-edu course on Vision Transformers.

One concept per module: :mod:`~cvt_edu.patching` (patches and token embeddings),
:mod:`~cvt_edu.positional` (positional embeddings), :mod:`~cvt_edu.patch_viz` (pictures of patches),
:mod:`~cvt_edu.projection` (linear and convolutional Q/K/V projections),
:mod:`~cvt_edu.attention` (multi-head attention and attention maps),
:mod:`~cvt_edu.attention_viz` (attention matrices, maps, rollout and distance),
:mod:`~cvt_edu.vit` and :mod:`~cvt_edu.cvt` (the models), :mod:`~cvt_edu.models`
(the registry), :mod:`~cvt_edu.data`, :mod:`~cvt_edu.train`, :mod:`~cvt_edu.cost`,
:mod:`~cvt_edu.plots`, :mod:`~cvt_edu.experiment`, :mod:`~cvt_edu.cli` and
:mod:`~cvt_edu.pretrained` (Hugging Face and torchvision weights in the course's models).
"""

from .checkpoint import load_checkpoint, save_pretrained
from .models import build_model, list_models
from .pretrained import load_pretrained

__version__ = "0.1.0"
__all__ = ["build_model", "list_models", "load_checkpoint", "load_pretrained", "save_pretrained", "__version__"]
