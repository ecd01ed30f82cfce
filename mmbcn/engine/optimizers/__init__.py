"""Optimizer wrapper constructors registered in MMEngine's ``OPTIM_WRAPPER_CONSTRUCTORS``."""

from .revisiting_bn_constructor import RevisitingBNOptimWrapperConstructor, is_scale

__all__ = ['RevisitingBNOptimWrapperConstructor', 'is_scale']
