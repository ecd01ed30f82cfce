"""Building the model of an mmdet, mmseg or mmpretrain config in its own scope."""

import importlib

from mmengine.registry import init_default_scope


def build_model(cfg):
    init_default_scope(cfg.default_scope)
    registry = importlib.import_module(f'{cfg.default_scope}.registry')
    return registry.MODELS.build(cfg.model)
