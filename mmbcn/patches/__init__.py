"""mmbcn's changes to other packages: declared (:mod:`.declared`), applied by ``import mmbcn``.

:func:`install` applies every patch of :data:`~.declared.PATCHES` once; :func:`patch_states`
says which were applied, skipped (and why) or wait for their module's import.
"""

from ..layers.kinds import mmbcn_layer_names
from .declared import AFTER_IMPORT, PATCHES
from .errors import (
    EfficientConvBNEvalError,
    PreciseBNError,
    ReparameterizationError,
    UnpatchedUpstreamError,
)
from .mechanism import PatchState, apply_patches, patch_states

__all__ = ['EfficientConvBNEvalError', 'PATCHES', 'PatchState', 'PreciseBNError',
           'ReparameterizationError', 'UnpatchedUpstreamError', 'install', 'mmbcn_layer_names',
           'patch_states']


def install() -> None:
    """Apply every declared patch (idempotent: a second call changes nothing)."""
    apply_patches(PATCHES, AFTER_IMPORT)
