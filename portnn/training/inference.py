"""`Model.evaluate`, `Model.predict` and `Model.export`: what a trained
model does with new data (a base of :class:`portnn.training.Model`)."""

from __future__ import annotations

from .. import distributed
from .._validation import validated_data
from ..distributed.checks import check_same_job
from ..layers.base import free_caches, no_grad
from ..losses.masking import masked_loss
from .arguments import positive_int, steps_argument
from .compiled import CompiledForward, EagerForward, check_mode, forward_key
from .inputs import Inputs, refuse_text
from .meters import Meters


class Inference:
    """Evaluation, prediction and export, for :class:`portnn.training.Model`."""

    def evaluate(self, x, y=None, *, loss=None, batch_size: int = 256,
                 metrics="auto", sample_weight=None, steps: int | None = None,
                 prefetch: bool = True) -> dict[str, float]:
        """Loss and metrics on `x`, `y` in evaluation mode.

        `x` may be arrays, a Dataset or an iterable of ``(x, y)`` batches,
        as for :meth:`fit`.

        Returns
        -------
        dict
            ``{"loss": ..., "accuracy": ...}`` over all samples, read from
            the device once.
        """
        batch_size = positive_int("batch_size", batch_size)
        steps = steps_argument("steps", steps)
        loss = self._resolve_loss(loss)
        metric_list = self._metrics(metrics, loss)
        refuse_text(y)
        world = distributed.current()
        with self._tentative_build():
            source = Inputs(self, loss, prefetch=prefetch,
                            shard=_shard(world)).source(
                x, y, sample_weight, batch_size=batch_size, steps=steps)
        if world.size > 1:
            check_same_job(world, "evaluate", self, source, None,
                            {"batch_size": batch_size, "loss": type(loss).__name__})
        with validated_data():
            return self._evaluate(source, loss, metric_list)

    def _evaluate(self, source, loss, metric_list):
        meters = Meters(self.backend, [m.fresh() for m in metric_list])
        forward = self._forward_function()
        with no_grad():
            for xb, yb, wb in source.batches():
                pred, mask = forward(xb)
                value = masked_loss(loss, pred, yb, wb, mask)
                meters.update(value, pred, yb, mask)
        free_caches(loss)
        meters.reduce(distributed.current())
        logs, _ = meters.read()
        return logs

    def predict(self, x, batch_size: int | None = None, steps: int | None = None,
                prefetch: bool = True):
        """Outputs for `x` in evaluation mode, as one array on the model's
        device; `x` may be arrays (in batches if `batch_size`), a Dataset or
        an iterable of batches (their ``x``)."""
        if batch_size is not None:
            batch_size = positive_int("batch_size", batch_size)
        steps = steps_argument("steps", steps)
        with self._tentative_build():  # a failed call leaves lazy layers unbuilt
            return self._predict(x, batch_size, steps, prefetch)

    def _forward_function(self):
        """What `evaluate` and `predict` call per batch, ``forward(x) ->
        (outputs, output mask)``: eager, or compiled as one program
        (``compile(jit_compile=...)``), kept while the model is made of the
        same layers and parameters, with the same settings."""
        if not check_mode(self.jit_compile, self.backend):
            return EagerForward(self)
        key = forward_key(self)
        kept = self.__dict__.get("_compiled_forward")
        if kept is None or kept[0] != key:
            kept = self._compiled_forward = (key, CompiledForward(self))
        return kept[1]

    def _predict(self, x, batch_size, steps, prefetch):
        from .prediction import predict_data

        return predict_data(self, x, batch_size, steps, prefetch)

    def export(self, path, format: str = "onnx", opset: int | None = None):
        """Write the model for another runtime (Keras 3's spelling); today
        ONNX, which onnxruntime runs with a dynamic batch size. Needs the
        input shape (a trained or built model) and ``pip install onnx``;
        a layer that cannot be exported is an error naming it and those
        that can (:data:`portnn.export.EXPORTABLE`).

        Parameters
        ----------
        path : str or path
            The ``.onnx`` file to write.
        format : {"onnx"}
            The format.
        opset : int, optional
            The ONNX opset (default and minimum 17).

        Returns
        -------
        onnx.ModelProto
            What was written, checked by ``onnx.checker``.

        Examples
        --------
        >>> import portnn
        >>> model = portnn.Sequential(portnn.Dense(4, 2)).build((4,))
        >>> model.export("model.onnx")  # doctest: +SKIP
        """
        if format != "onnx":
            msg = f"export: format must be 'onnx', got {format!r}"
            raise ValueError(msg)
        from ..export import export_onnx

        return export_onnx(self, path, opset)


def _shard(world):
    """This rank's place in the world, or None when working alone."""
    return None if world.size == 1 else (world.rank, world.size)
