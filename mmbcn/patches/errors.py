"""The errors mmbcn's patches raise where upstream code would treat BCN or WSConv2d wrongly."""

__all__ = ['EfficientConvBNEvalError', 'PreciseBNError', 'ReparameterizationError',
           'UnpatchedUpstreamError']


class EfficientConvBNEvalError(ValueError):
    """MMEngine's fx-based efficient conv-BN eval asked for a module holding BCN or WSConv2d."""


class PreciseBNError(ValueError):
    """mmpretrain's precise BN (or torch's SWA update_bn) asked to recompute micro-batch BCN."""


class ReparameterizationError(ValueError):
    """A re-parameterization that folds norms as BatchNorm asked to fold BCN or WSConv2d."""


class UnpatchedUpstreamError(RuntimeError):
    """An upstream function that treats BCN or WSConv2d as BN or a plain conv was called on a
    model holding them, and mmbcn's patch of it could not be applied on this stack."""
