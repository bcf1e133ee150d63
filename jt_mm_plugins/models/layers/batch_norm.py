"""A BatchNorm for Jittor with exactly torch.nn.BatchNorm2d's semantics."""
from typing import Optional

import torch

from jt_mm_plugins.bridge.mirrors import register_torch_mirror

from jt_mm_plugins.ops.batch_norm import batch_norm_train, batch_norm_train_supported
from jt_mm_plugins.runtime import jt
from jt_mm_plugins.utils.errors import InputError


@register_torch_mirror(torch.nn.BatchNorm2d)  # mmengine: a norm layer (norm_decay_mult, norm_eval)
class BatchNorm2d(jt.nn.Module):
    """Batch normalisation (`Ioffe & Szegedy, 2015 <https://arxiv.org/abs/1502.03167>`_) that behaves
    like ``torch.nn.BatchNorm2d``.

    Jittor's own ``nn.BatchNorm`` differs in two ways that break alignment with PyTorch checkpoints and
    training curves: its running variance is updated with the biased batch variance (torch uses the
    unbiased one), and it has no ``num_batches_tracked`` (so ``momentum=None``, the cumulative average,
    is impossible and mmdet checkpoints do not load strictly). It also computes the variance as
    E[x^2] - E[x]^2, which loses precision on activations with a large mean.

    Args:
        num_features (int): Number of channels ``C`` of an ``(N, C, ...)`` input.
        eps (float): Added to the variance for numerical stability. Defaults to 1e-5.
        momentum (float, optional): Weight of the batch statistic in the running averages; ``None``
            gives the cumulative moving average. Defaults to 0.1.
        affine (bool): Learn a per-channel scale ``weight`` and shift ``bias``. Defaults to True.
        track_running_stats (bool): Keep running statistics for evaluation. Defaults to True.
    """

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: Optional[float] = 0.1,
                 affine: bool = True, track_running_stats: bool = True) -> None:
        super().__init__()
        self.num_features = num_features
        self.eps = eps
        self.momentum = momentum
        self.affine = affine
        self.track_running_stats = track_running_stats
        if affine:
            self.weight = jt.ones((num_features, ), dtype='float32')
            self.bias = jt.zeros((num_features, ), dtype='float32')
        if track_running_stats:
            self.running_mean = jt.zeros((num_features, ), dtype='float32').stop_grad()
            self.running_var = jt.ones((num_features, ), dtype='float32').stop_grad()
            # Only the bridge and the cumulative average read it; shape (1,) (Jittor has no 0-d Var).
            self.num_batches_tracked = jt.zeros((1, ), dtype='int64').stop_grad()

    def execute(self, x: jt.Var) -> jt.Var:
        if x.ndim < 2 or x.shape[1] != self.num_features:
            raise InputError(f'BatchNorm2d expects (N, {self.num_features}, ...) input, got shape '
                             f'{tuple(x.shape)}')
        reduce_dims = [0] + list(range(2, x.ndim))
        use_batch_stats = self.is_training() or not self.track_running_stats
        if use_batch_stats and batch_norm_train_supported(x):
            # Fused CPU kernels (jt_mm_plugins/ops/batch_norm.py): the same result, several times
            # faster than the Jittor ops below.
            normed, mean, var = batch_norm_train(x, self.weight if self.affine else None,
                                                 self.bias if self.affine else None, self.eps)
            if self.is_training() and self.track_running_stats:
                self._update_running_stats(mean, var, x.numel() // self.num_features)
            return normed
        if use_batch_stats:
            mean = x.mean(dims=reduce_dims)
            centered = x - self._per_channel(mean, x.ndim)
            var = (centered * centered).mean(dims=reduce_dims)
            if self.is_training() and self.track_running_stats:
                self._update_running_stats(mean, var, x.numel() // self.num_features)
            normed = centered / self._per_channel(jt.sqrt(var + self.eps), x.ndim)
        else:
            normed = (x - self._per_channel(self.running_mean, x.ndim)) / self._per_channel(
                jt.sqrt(self.running_var + self.eps), x.ndim)
        if self.affine:
            normed = normed * self._per_channel(self.weight, x.ndim) + self._per_channel(
                self.bias, x.ndim)
        return normed

    @staticmethod
    def _per_channel(v: jt.Var, ndim: int) -> jt.Var:
        return v.reshape([1, -1] + [1] * (ndim - 2))

    def _update_running_stats(self, mean: jt.Var, var: jt.Var, count: int) -> None:
        self.num_batches_tracked.update(self.num_batches_tracked + 1)
        if self.momentum is None:
            # Cumulative moving average, as torch: factor 1 / num_batches_tracked (after increment).
            factor = 1.0 / self.num_batches_tracked.float32()
        else:
            factor = self.momentum
        unbiased_var = var * (count / max(count - 1, 1))
        mean, unbiased_var = mean.detach(), unbiased_var.detach()
        self.running_mean.update(self.running_mean + (mean - self.running_mean) * factor)
        self.running_var.update(self.running_var + (unbiased_var - self.running_var) * factor)


def distributed_world_size() -> int:
    """Processes in torch.distributed's default group (1 when it is not initialised)."""
    dist = torch.distributed
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


class SyncBatchNorm(BatchNorm2d):
    """mmcv's ``SyncBN`` inside a Jittor component.

    In one process it is :class:`BatchNorm2d`, which is what mmengine's ``revert_sync_batchnorm``
    makes of torch's ``SyncBatchNorm`` when training is not distributed (its torch mirror is
    therefore a ``BatchNorm2d`` too). Synchronising batch statistics across processes is not
    implemented in Jittor parts, so with more than one process it refuses to train rather than
    normalise each process's share of the batch on its own, silently: use ``BN`` (per-process
    statistics, said in the config) or a PyTorch part for that layer.
    """

    def execute(self, x: jt.Var) -> jt.Var:
        if self.is_training() or not self.track_running_stats:  # batch statistics
            refuse_unsynchronised_syncbn(distributed_world_size())
        return super().execute(x)


def refuse_unsynchronised_syncbn(world_size: int) -> None:
    """Raise when ``SyncBN`` would train with unsynchronised statistics across ``world_size``
    processes."""
    if world_size > 1:
        raise NotImplementedError(
            f"norm_cfg=dict(type='SyncBN') in a Jittor component: batch statistics are not "
            f'synchronised across processes in Jittor parts, and training on {world_size} processes '
            f"would normalise each process's share alone. Use norm_cfg=dict(type='BN') there (per-"
            f'process statistics, stated in the config), or a PyTorch part for that layer.')
