"""An MMEngine hook that schedules the update rate r (each BCN layer's ``momentum``) of BCN's
estimated statistics."""

import warnings

from mmengine.hooks import Hook
from mmengine.registry import HOOKS

from ...layers.bcn import BatchChannelNorm2d
from ...layers.bcn_stages import BCNBatchStage
from ...utils.deprecation import REMOVED_IN

POLICIES = ('constant', 'lr')


@HOOKS.register_module()
class BCNUpdateRateHook(Hook):
    """Set ``momentum`` (r, the update rate) of every micro-batch-mode BCN layer before each
    training iteration (and of every :class:`~mmbcn.layers.BCNBatchStage`, the ablation layer
    that runs BCN's micro-batch batch stage alone, the same way).

    Policies, for training iteration t (``runner.iter``)::

        'constant':  r_t = rate
        'lr':        r_t = rate * lr_t / lr_0       (lr_0: the first param group's base lr)

    and in both ``r_t = clip(max(r_t, 1 / max(t, 1)), min_rate, 1)`` when ``warm_start`` is True.

    The policies and their defaults are mmbcn's choices: the authors' release has the rate as
    ``EstBN``'s ``estbn_moving_speed`` buffer (initialized to 0, set by nothing in the release)
    and no micro-batch training script, so the r used for the paper's micro-batch experiments
    is not public. mmbcn's reasoning for ``'lr'``: the estimates must track statistics that
    drift as the weights move, and the weights move in proportion to the learning rate, so late
    in a decaying schedule the estimates can average over many more micro-batches. ``rate=0.1``
    equals BatchNorm's default momentum at the base learning rate. The default is kept by
    measurement (``make study-rate``, docs/en/elimination/update_rate.md): on the demo's
    micro-batch segmentation task, 3 seeds, ``'lr'`` beat ``'constant'`` at every seed; a
    small-task result.
    The warm start (r = 1 at iterations 0 and 1, then ``1 / t``) makes the estimates the plain
    average of the batches seen since iteration 1, as BatchNorm's cumulative average does, so
    they forget their initial values within the first iterations, also while a learning-rate
    warmup keeps ``lr_t`` tiny. What the first estimates are, with the authors' ``EstBN`` rule
    (``v = mean (x - mu_old)^2``, see :mod:`mmbcn.ops.maths`):

    * iteration 0 (r = 1): ``mu`` = the batch mean; ``var`` = the batch's spread around the
      initial running mean: ``var_b + mu_b^2`` from fresh buffers (0 / 1), an over-estimate that
      is never 0 unless x is (a one-value-per-channel batch gives ``x^2``, not 0), or
      ``var_b + (mu_b - mu_ckpt)^2`` from an ImageNet checkpoint's statistics;
    * iteration 1 (r = 1 again): the spread of the second batch around the first batch's mean,
      which depends on the data alone, whatever the initial buffers held;
    * later: the running average of those spreads, until ``r_t`` takes over.

    Large-batch-mode layers (``estimate=False``) are left alone unless ``include_large_batch``;
    their ``momentum`` is BatchNorm's and only shapes the statistics used at test time.
    The current r is logged as ``train/bcn_update_rate``.

    Args:
        policy: ``'constant'`` or ``'lr'``.
        rate: sets each layer's ``momentum`` (= r): r for ``'constant'``; r at the base learning
            rate for ``'lr'``.
        min_rate: lower bound of r.
        warm_start: apply the ``1 / max(t, 1)`` floor.
        include_large_batch: also set ``momentum`` of large-batch-mode BCN layers.
    """

    priority = 'NORMAL'

    def __init__(self, policy: str = 'lr', rate: float = 0.1, min_rate: float = 0.0,
                 warm_start: bool = True, include_large_batch: bool = False):
        if policy not in POLICIES:
            raise ValueError(f'BCNUpdateRateHook: policy must be one of {POLICIES}, '
                             f'got {policy!r}.')
        if not 0.0 < rate <= 1.0 or not 0.0 <= min_rate <= 1.0:
            raise ValueError(f'BCNUpdateRateHook: rate must be in (0, 1] and min_rate in [0, 1], '
                             f'got rate={rate!r}, min_rate={min_rate!r}.')
        self.policy = policy
        self.rate = rate
        self.min_rate = min_rate
        self.warm_start = warm_start
        self.include_large_batch = include_large_batch
        self.base_lr = None

    def before_train(self, runner) -> None:
        self.base_lr = _base_lr(runner)
        layers = self._layers(runner)
        if not layers:
            runner.logger.warning(
                'BCNUpdateRateHook: the model has no BCN layer in micro-batch mode '
                '(estimate=True); the hook does nothing. Set estimate=True in norm_cfg, or '
                'include_large_batch=True.')

    def momentum_at(self, iteration: int, lr: float) -> float:
        """The layers' ``momentum`` (r) for training iteration ``iteration`` at learning rate
        ``lr``."""
        momentum = self.rate
        if self.policy == 'lr':
            momentum = self.rate * lr / self.base_lr if self.base_lr else self.rate
        if self.warm_start:
            momentum = max(momentum, 1.0 / max(iteration, 1))
        return min(max(momentum, self.min_rate), 1.0)

    def update_rate(self, iteration: int, lr: float) -> float:
        """:meth:`momentum_at`'s name in mmbcn 0.1; works, with a FutureWarning, until 0.2."""
        warnings.warn(f'BCNUpdateRateHook.update_rate is now BCNUpdateRateHook.momentum_at; the '
                      f'old name works until {REMOVED_IN}.', FutureWarning, stacklevel=2)
        return self.momentum_at(iteration, lr)

    def before_train_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        momentum = self.momentum_at(runner.iter, _current_lr(runner))
        for layer in self._layers(runner):
            layer.momentum = momentum
        runner.message_hub.update_scalar('train/bcn_update_rate', momentum)

    def _layers(self, runner):
        return [
            m for m in runner.model.modules()
            if isinstance(m, (BatchChannelNorm2d, BCNBatchStage))
            and (m.estimate or self.include_large_batch)
        ]


def _first_param_group(runner):
    optimizer = runner.optim_wrapper.optimizer
    if isinstance(optimizer, dict):  # OptimWrapperDict: the first wrapper's optimizer
        optimizer = next(iter(optimizer.values()))
    return optimizer.param_groups[0]


def _current_lr(runner) -> float:
    return float(_first_param_group(runner)['lr'])


def _base_lr(runner) -> float:
    """The first param group's lr before schedulers (warmup included) scaled it."""
    group = _first_param_group(runner)
    return float(group.get('initial_lr', group['lr']))
