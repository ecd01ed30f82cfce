"""Building the model of an mmdet, mmseg or mmpretrain config in its own scope."""

from mmbcn.utils.config_files import build_model

__all__ = ['build_model']
