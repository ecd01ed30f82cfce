"""The ops: BCN's maths, its autograd Function and backends, and weight standardization.

Nothing here depends on MMEngine; :mod:`mmbcn.layers` wraps these as registered modules.
"""

from .function import batch_channel_norm
from .maths import ESTIMATE_RULES
from .weight_standardization import WS_EPS_FORMS, weight_standardize

__all__ = ['batch_channel_norm', 'weight_standardize', 'ESTIMATE_RULES', 'WS_EPS_FORMS']
