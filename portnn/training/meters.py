"""`Meters`: the epoch's loss and metric sums, kept on the device and read
once.

On a GPU every read of a device value waits for all queued work, so the
loop adds each batch's figures into 0-d device arrays and reads them all in
one transfer at the end of the epoch (:func:`portnn._host.read_scalars`).
"""

from __future__ import annotations

from .._host import accumulator_dtype, read_arrays
from ..data.sources import batch_rows
from .metrics import refuse_mask


class Meters:
    """Running sums of the loss and the metrics over one epoch.

    Parameters
    ----------
    backend : Backend
        Where the sums live (the model's backend and device).
    metrics : list of Metric
        Accumulated alongside the loss.
    """

    def __init__(self, backend, metrics) -> None:
        self.backend = backend
        self.metrics = list(metrics)
        self.reset()

    def reset(self) -> None:
        """Start a new epoch: zero sums on the device, none read yet."""
        xp, b = self.backend.xp, self.backend
        self.loss_sum = xp.zeros((), dtype=accumulator_dtype(b), device=b.device)
        self.count = 0
        for metric in self.metrics:
            metric.reset(b)

    def update(self, value, pred, target, mask=None) -> None:
        """Add one batch: its 0-d mean loss `value`, predictions, targets
        and the output's mask (padded steps out of the metrics; a rank
        with no rows of a short last batch adds nothing)."""
        xp = self.backend.xp
        size = batch_rows(pred)
        if size == 0:
            return
        self.loss_sum = self.loss_sum + xp.astype(value, self.loss_sum.dtype) * size
        self.count += size
        for metric in self.metrics:
            if mask is None:
                metric.update(pred, target)
            elif not metric.supports_mask:
                refuse_mask(metric)
            else:
                metric.update(pred, target, mask=mask)

    def reduce(self, world) -> None:
        """Sum the ranks' accumulations (data-parallel training)."""
        if world.size == 1:
            return
        self.loss_sum = world.all_reduce(self.loss_sum)
        self.count = int(world.all_reduce_numbers([self.count])[0])
        for metric in self.metrics:
            metric.reduce(world)

    def read(self, extra=()) -> tuple[dict[str, float], list[float]]:
        """The epoch's figures (one host transfer, `extra` arrays included).

        Returns
        -------
        logs : dict
            ``{"loss": mean loss, <metric name>: value, ...}``.
        extra : list of float
            The host values of `extra`.
        """
        totals = [metric.totals() for metric in self.metrics]
        arrays = [self.loss_sum, *(a for t in totals for a in t), *extra]
        host = iter(read_arrays(arrays, self.backend))
        logs = {"loss": next(host)[0] / max(self.count, 1)}
        for metric, own in zip(self.metrics, totals, strict=True):
            logs[metric.name] = metric.result(
                [v for _ in own for v in next(host)])
        return logs, [v for values in host for v in values]
