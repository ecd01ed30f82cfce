"""Building the model of an mmdet or mmseg config in its own scope."""

from mmengine.registry import init_default_scope


def build_model(cfg):
    init_default_scope(cfg.default_scope)
    if cfg.default_scope == 'mmdet':
        from mmdet.registry import MODELS
    else:
        from mmseg.registry import MODELS
    return MODELS.build(cfg.model)
