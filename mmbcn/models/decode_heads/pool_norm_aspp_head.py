"""``PoolNormASPPHead``: mmseg's ASPPHead whose image-pooling branch has a norm of its own.

mmseg's ``ASPPHead`` builds its image-pooling branch (global average pool, 1x1 conv, norm,
activation) with the head's ``norm_cfg``, so that norm sees 1x1 features: one value per channel
and image. At one image per process, BatchNorm cannot train there (torch refuses one value per
channel) and batch statistics of BCN's batch stage come from as many values as there are images.
This head takes ``image_pool_norm_cfg`` for that branch alone. The study's swap rule swaps
``norm_cfg`` keys only, so a study config with this head keeps the branch's norm the same for
every preset (``configs/study/deeplabv3_r18-d8_gn-ws_2xb1-study-gn-pool-demo-shapes.py``): the
study's way of asking what the default task's result owes to that branch. Checkpoint keys are
ASPPHead's.

Importing this module imports mmseg.
"""

from mmcv.cnn import ConvModule
from mmseg.models.decode_heads.aspp_head import ASPPHead
from mmseg.registry import MODELS

__all__ = ['PoolNormASPPHead']


@MODELS.register_module()
class PoolNormASPPHead(ASPPHead):
    """ASPPHead with ``image_pool_norm_cfg`` for its image-pooling branch (the rest as
    ASPPHead; ``conv_cfg`` and ``act_cfg`` are the head's for that branch too)."""

    def __init__(self, image_pool_norm_cfg: dict, **kwargs):
        super().__init__(**kwargs)
        self.image_pool_norm_cfg = image_pool_norm_cfg
        self.image_pool[1] = ConvModule(self.in_channels, self.channels, 1,
                                        conv_cfg=self.conv_cfg, norm_cfg=image_pool_norm_cfg,
                                        act_cfg=self.act_cfg)
