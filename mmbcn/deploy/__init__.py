"""BCN+WS models for inference: the conv-norm algebra, folding, the deployed model and ONNX.

* :mod:`.conv_norm`: BCN and WSConv2d in eval mode as plain pieces (the batch stage's affine,
  the channel stage's GroupNorm, a conv with its standardized weight, an affine folded into a
  conv), which the two users below build on;
* :mod:`.folding`: what OpenMMLab's conv-BN fusers (mmcv's ``fuse_conv_bn``,
  ``ConvModule(efficient_conv_bn_eval=True)``) compute for BCN and WSConv2d, which
  :mod:`mmbcn.patches` installs;
* :mod:`.model`: :func:`deploy_model`, a whole model as plain convs and GroupNorm;
* :mod:`.onnx_export`: ONNX export of a deployed model, checked with onnxruntime.

``python tools/deploy.py CONFIG CHECKPOINT`` (:mod:`mmbcn.commands.deploy`) runs them on a
trained model.
"""

from .folding import efficient_conv_norm_eval_forward, fuse_conv_norm, involves_mmbcn
from .model import ChannelAffineGroupNorm, deploy_model
from .onnx_export import TensorForward, export_onnx, onnxruntime_max_error

__all__ = ['ChannelAffineGroupNorm', 'TensorForward', 'deploy_model',
           'efficient_conv_norm_eval_forward', 'export_onnx', 'fuse_conv_norm', 'involves_mmbcn',
           'onnxruntime_max_error']
