"""mmbcn's measures of elimination singularities (plain PyTorch, no MMEngine below this line).

* :mod:`.measures`: the measures as functions on tensors (what each one is, exactly);
* :mod:`.structure`: which modules are normalization layers, what each one feeds, the stages;
* :mod:`.collector`: forward hooks that collect the measures during a model's own forward and
  merge them over batches and processes;
* :mod:`.statistics`: :func:`channel_statistics` and :func:`norm_statistics`, the entry points;
* :mod:`.report`: the table, JSON and picture of a report.
"""

from .collector import NormStatisticsCollector
from .measures import channel_figures, channel_sums, mean_pairwise_cosine
from .statistics import channel_statistics, norm_statistics
from .structure import feed_kinds, find_stages, normalization_layers

__all__ = ['channel_statistics', 'norm_statistics', 'NormStatisticsCollector', 'channel_sums',
           'channel_figures', 'mean_pairwise_cosine', 'feed_kinds', 'find_stages',
           'normalization_layers']
