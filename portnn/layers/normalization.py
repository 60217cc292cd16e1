"""Normalization layers: `BatchNorm1D`, `BatchNorm2D` and `LayerNorm`.

All three compute ``xhat = (x - mean) / sqrt(var + eps)`` over some axes and
return ``gamma * xhat + beta``. With ``m`` elements per statistic, the
backward through the batch statistics is::

    dxhat = dy * gamma
    dx = (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat)) / sqrt(var + eps)
"""

from __future__ import annotations

import math

from .. import init as initializers
from .._namespace import namespace
from .base import Layer, dtype_name, float_dtype, upcast


def _normalize_backward(dxhat, xhat, inv_std, axes):
    xp = namespace(dxhat)
    mean_dxhat = xp.mean(dxhat, axis=axes, keepdims=True)
    mean_dxhat_xhat = xp.mean(dxhat * xhat, axis=axes, keepdims=True)
    return (dxhat - mean_dxhat - xhat * mean_dxhat_xhat) * inv_std


def _trailing_shape(layer, normalized_shape) -> tuple:
    """A norm's `normalized_shape` as a tuple of positive ints."""
    shape = ((normalized_shape,) if isinstance(normalized_shape, int)
             else tuple(normalized_shape))
    if not shape or not all(isinstance(s, int) and s > 0 for s in shape):
        msg = (f"{type(layer).__name__}: normalized_shape must be positive ints, "
               f"got {shape!r}")
        raise ValueError(msg)
    return shape


def _check_trailing(layer, x) -> None:
    """`x` must end in the layer's `normalized_shape`."""
    k = len(layer.normalized_shape)
    if x.ndim < k or tuple(x.shape[x.ndim - k:]) != layer.normalized_shape:
        msg = (f"{type(layer).__name__}: expected input ending in "
               f"{layer.normalized_shape}, got shape {tuple(x.shape)}")
        raise ValueError(msg)


def _synced_moments(world, xp, x, axes, bshape):
    """Mean, centred input, variance over every rank's rows (two
    all-reduces: the sums with the row count, then the centred squares),
    and the global count, all on the device."""
    count = math.prod(x.shape) // x.shape[1]
    total = world.all_reduce(xp.concat([
        xp.sum(x, axis=axes), xp.asarray([float(count)], dtype=x.dtype,
                                         device=x.device)]))
    n = total[-1]
    mean = xp.reshape(total[:-1] / n, bshape)
    xc = x - mean
    var = world.all_reduce(xp.sum(xc * xc, axis=axes)) / n
    return mean, xc, xp.reshape(var, bshape), n


def _synced_normalize_backward(world, dxhat, xhat, inv_std, axes, n):
    xp = namespace(dxhat)
    sums = world.all_reduce(xp.concat([xp.sum(dxhat, axis=axes),
                                       xp.sum(dxhat * xhat, axis=axes)]))
    c = xhat.shape[1]
    shape = (1, c) + (1,) * (xhat.ndim - 2)
    mean_dxhat = xp.reshape(sums[:c] / n, shape)
    mean_dxhat_xhat = xp.reshape(sums[c:] / n, shape)
    return (dxhat - mean_dxhat - xhat * mean_dxhat_xhat) * inv_std


class _BatchNorm(Layer):
    """Normalize each channel (axis 1) over the batch and spatial axes."""

    ndims: tuple[int, ...] = ()
    layout = ""
    _cache_attrs = ("_xhat", "_inv_std", "_training", "_axes", "_bshape", "_in_dtype",
                    "_world", "_count")

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float = 0.1,
                 affine: bool = True, sync: bool = False, *, backend=None,
                 dtype=None) -> None:
        super().__init__(backend)
        self.sync = bool(sync)
        name = type(self).__name__
        if not isinstance(num_features, int) or num_features <= 0:
            msg = f"{name}: num_features must be a positive int, got {num_features!r}"
            raise ValueError(msg)
        if not 0.0 < momentum <= 1.0 or eps <= 0:
            msg = f"{name}: need 0 < momentum <= 1 and eps > 0, got {momentum}, {eps}"
            raise ValueError(msg)
        self.num_features, self.eps, self.momentum = num_features, eps, momentum
        self._dtype = float_dtype(self.backend, dtype)
        shape, kw = (num_features,), {"backend": self.backend, "dtype": self._dtype}
        self.gamma = self.beta = None
        if affine:
            self.gamma = self.add_parameter("gamma", initializers.ones(shape, **kw))
            self.beta = self.add_parameter("beta", initializers.zeros(shape, **kw))
        self.add_buffer("running_mean", initializers.zeros(shape, **kw))
        self.add_buffer("running_var", initializers.ones(shape, **kw))

    @property
    def running_mean(self):
        """Moving average of the batch means (used in evaluation)."""
        return self._buffers["running_mean"]

    @property
    def running_var(self):
        """Moving average of the unbiased batch variances."""
        return self._buffers["running_var"]

    def _check(self, x):
        if x.ndim not in self.ndims or x.shape[1] != self.num_features:
            msg = (
                f"{type(self).__name__}: expected input {self.layout} with "
                f"{self.num_features} channels, got shape {tuple(x.shape)}"
            )
            raise ValueError(msg)

    def forward(self, x, training=False):
        self._check(x)
        xp = namespace(x)
        self._in_dtype = x.dtype
        x = upcast(xp, x)  # statistics in float32 under mixed precision
        axes = (0, *range(2, x.ndim))
        bshape = (1, self.num_features) + (1,) * (x.ndim - 2)
        training = training and self.trainable  # frozen: running statistics
        self._world = None
        if training:
            m = math.prod(x.shape) // self.num_features
            world = self._sync_world()
            if world is not None:  # statistics of the global batch, every rank
                mean, xc, var, m = _synced_moments(world, xp, x, axes, bshape)
                self._world, self._count = world, m
            elif m < 2:
                msg = (
                    f"{type(self).__name__}: training needs more than one value per "
                    f"channel to compute a variance, got input shape "
                    f"{tuple(x.shape)}"
                )
                raise ValueError(msg)
            else:
                mean = xp.mean(x, axis=axes, keepdims=True)
                xc = x - mean
                var = xp.mean(xc * xc, axis=axes, keepdims=True)
            inv_std = 1.0 / xp.sqrt(var + self.eps)
            mom = self.momentum
            self._buffers["running_mean"] = (
                (1.0 - mom) * self.running_mean + mom * xp.reshape(mean, (-1,)))
            self._buffers["running_var"] = (
                (1.0 - mom) * self.running_var
                + (mom * m / (m - 1)) * xp.reshape(var, (-1,)))
        else:
            xc = x - xp.reshape(self.running_mean, bshape)
            inv_std = 1.0 / xp.sqrt(xp.reshape(self.running_var, bshape) + self.eps)
        self._xhat, self._inv_std, self._training = xc * inv_std, inv_std, training
        self._axes, self._bshape = axes, bshape
        if self.gamma is None:
            return xp.astype(self._xhat, self._in_dtype, copy=False)
        y = (self._xhat * xp.reshape(upcast(xp, self.gamma.value), bshape)
             + xp.reshape(upcast(xp, self.beta.value), bshape))
        return xp.astype(y, self._in_dtype, copy=False)

    def backward(self, dy):
        xp = namespace(dy)
        dy = upcast(xp, dy)
        dxhat = dy
        if self.gamma is not None:
            self.gamma.accumulate(xp.sum(dy * self._xhat, axis=self._axes))
            self.beta.accumulate(xp.sum(dy, axis=self._axes))
            dxhat = dy * xp.reshape(upcast(xp, self.gamma.value), self._bshape)
        if not self._training:  # fixed statistics: an affine map
            return xp.astype(dxhat * self._inv_std, self._in_dtype, copy=False)
        if self._world is not None:
            dx = _synced_normalize_backward(self._world, dxhat, self._xhat,
                                            self._inv_std, self._axes, self._count)
        else:
            dx = _normalize_backward(dxhat, self._xhat, self._inv_std, self._axes)
        return xp.astype(dx, self._in_dtype, copy=False)

    def _sync_world(self):
        """The world whose ranks share statistics (``sync=True`` in
        data-parallel training), or None."""
        if not self.sync:
            return None
        from .. import distributed

        world = distributed.current()
        return world if world.size > 1 else None

    def get_config(self) -> dict:
        """Constructor arguments."""
        return {"num_features": self.num_features, "eps": self.eps,
                "momentum": self.momentum, "affine": self.gamma is not None,
                "sync": self.sync, "dtype": dtype_name(self._dtype)}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.num_features})"


class BatchNorm1D(_BatchNorm):
    """Batch normalization of ``(batch, features)`` or ``(batch, channels,
    length)`` input, per feature/channel.

    Parameters
    ----------
    num_features : int
        Size of axis 1.
    eps : float
        Added to the variance.
    momentum : float
        Weight of the new batch in the running statistics (PyTorch's
        convention: ``running = (1 - momentum) * running + momentum * batch``).
    affine : bool
        Learn a scale ``gamma`` and shift ``beta``.
    sync : bool, default False
        In data-parallel training, compute the batch statistics over every
        rank's rows (PyTorch's ``SyncBatchNorm``: three all-reduces per
        step); by default each rank normalizes with its own rows and the
        running statistics are averaged over the ranks each epoch.
    backend, dtype : optional

    Notes
    -----
    Training normalizes with the batch statistics and updates the running
    ones (the variance unbiased, as in PyTorch); evaluation uses the running
    statistics. They are buffers: saved in ``state_dict`` and checkpoints.

    Examples
    --------
    >>> import portnn
    >>> bn = portnn.BatchNorm1D(3)
    >>> x = portnn.get_backend().xp.ones((4, 3))
    >>> bn(x, training=True).shape
    (4, 3)
    """

    ndims = (2, 3)
    layout = "(batch, features) or (batch, channels, length)"


class BatchNorm2D(_BatchNorm):
    """Batch normalization of ``(batch, channels, height, width)`` input, per
    channel. Parameters as for :class:`BatchNorm1D`.

    Examples
    --------
    >>> import portnn
    >>> bn = portnn.BatchNorm2D(3)
    >>> x = portnn.get_backend().xp.ones((2, 3, 4, 4))
    >>> bn(x).shape
    (2, 3, 4, 4)
    """

    ndims = (4,)
    layout = "(batch, channels, height, width)"


class LayerNorm(Layer):
    """Normalize each sample over its trailing axes (the Transformer norm).

    Parameters
    ----------
    normalized_shape : int or tuple of int
        The trailing shape normalized over, e.g. the model width.
    eps : float
        Added to the variance.
    elementwise_affine : bool
        Learn ``gamma`` and ``beta`` of shape `normalized_shape`.
    backend, dtype : optional

    Examples
    --------
    >>> import portnn
    >>> ln = portnn.LayerNorm(4)
    >>> x = portnn.get_backend().xp.ones((2, 5, 4))
    >>> ln(x).shape
    (2, 5, 4)
    """

    _cache_attrs = ("_xhat", "_inv_std", "_axes", "_in_dtype")

    @property
    def supports_masking(self) -> bool:
        # each step alone when normalizing its features; not over time
        return len(self.normalized_shape) == 1

    def __init__(self, normalized_shape, eps: float = 1e-5,
                 elementwise_affine: bool = True, *, backend=None, dtype=None):
        super().__init__(backend)
        shape = _trailing_shape(self, normalized_shape)
        self.normalized_shape, self.eps = shape, eps
        self._dtype = float_dtype(self.backend, dtype)
        kw = {"backend": self.backend, "dtype": self._dtype}
        self.gamma = self.beta = None
        if elementwise_affine:
            self.gamma = self.add_parameter("gamma", initializers.ones(shape, **kw))
            self.beta = self.add_parameter("beta", initializers.zeros(shape, **kw))

    def forward(self, x, training=False):
        k = len(self.normalized_shape)
        _check_trailing(self, x)
        xp = namespace(x)
        self._in_dtype = x.dtype
        x = upcast(xp, x)  # statistics in float32 under mixed precision
        axes = tuple(range(x.ndim - k, x.ndim))
        xc = x - xp.mean(x, axis=axes, keepdims=True)
        inv_std = 1.0 / xp.sqrt(xp.mean(xc * xc, axis=axes, keepdims=True) + self.eps)
        self._xhat, self._inv_std, self._axes = xc * inv_std, inv_std, axes
        if self.gamma is None:
            return xp.astype(self._xhat, self._in_dtype, copy=False)
        y = self._xhat * upcast(xp, self.gamma.value) + upcast(xp, self.beta.value)
        return xp.astype(y, self._in_dtype, copy=False)

    def backward(self, dy):
        xp = namespace(dy)
        dy = upcast(xp, dy)
        dxhat = dy
        if self.gamma is not None:
            lead = tuple(range(dy.ndim - len(self._axes)))
            self.gamma.accumulate(xp.sum(dy * self._xhat, axis=lead))
            self.beta.accumulate(xp.sum(dy, axis=lead))
            dxhat = dy * upcast(xp, self.gamma.value)
        dx = _normalize_backward(dxhat, self._xhat, self._inv_std, self._axes)
        return xp.astype(dx, self._in_dtype, copy=False)

    def get_config(self) -> dict:
        """Constructor arguments."""
        return {"normalized_shape": list(self.normalized_shape), "eps": self.eps,
                "elementwise_affine": self.gamma is not None,
                "dtype": dtype_name(self._dtype)}

    def __repr__(self) -> str:
        return f"LayerNorm({self.normalized_shape})"


class RMSNorm(Layer):
    """Scale each sample's trailing axes by their root mean square (no
    centring, no shift): ``y = x / sqrt(mean(x**2) + eps) * gamma``, as
    ``torch.nn.RMSNorm``.

    Parameters
    ----------
    normalized_shape : int or tuple of int
        The trailing shape normalized over.
    eps : float, optional
        Added to the mean square; default the input dtype's machine epsilon
        (PyTorch's ``eps=None``).
    elementwise_affine : bool
        Learn ``gamma`` of shape `normalized_shape`.
    backend, dtype : optional

    Notes
    -----
    With ``r = 1 / sqrt(mean(x**2) + eps)`` and ``u = x r``: ``du = dy gamma``,
    ``dx = r (du - u mean(du u))``, ``dgamma = sum(dy u)`` over the leading axes.

    Examples
    --------
    >>> import portnn
    >>> norm = portnn.RMSNorm(2)
    >>> x = portnn.get_backend().asarray([[3.0, 4.0]], dtype=norm.gamma.dtype)
    >>> [round(v, 4) for v in norm(x)[0].tolist()]
    [0.8485, 1.1314]
    """

    _cache_attrs = ("_u", "_r", "_axes", "_in_dtype")

    def __init__(self, normalized_shape, eps: float | None = None,
                 elementwise_affine: bool = True, *, backend=None, dtype=None):
        super().__init__(backend)
        shape = _trailing_shape(self, normalized_shape)
        self.normalized_shape, self.eps = shape, eps
        self._dtype = float_dtype(self.backend, dtype)
        self.gamma = None
        if elementwise_affine:
            self.gamma = self.add_parameter("gamma", initializers.ones(
                shape, backend=self.backend, dtype=self._dtype))

    @property
    def supports_masking(self) -> bool:
        return len(self.normalized_shape) == 1  # each step alone, as LayerNorm

    def forward(self, x, training=False):
        k = len(self.normalized_shape)
        _check_trailing(self, x)
        xp = namespace(x)
        self._in_dtype = x.dtype
        eps = self.eps if self.eps is not None else float(xp.finfo(x.dtype).eps)
        x = upcast(xp, x)  # statistics in float32 under mixed precision
        axes = tuple(range(x.ndim - k, x.ndim))
        r = 1.0 / xp.sqrt(xp.mean(x * x, axis=axes, keepdims=True) + eps)
        self._u, self._r, self._axes = x * r, r, axes
        y = self._u if self.gamma is None else self._u * upcast(xp, self.gamma.value)
        return xp.astype(y, self._in_dtype, copy=False)

    def backward(self, dy):
        xp = namespace(dy)
        dy = upcast(xp, dy)
        du = dy
        if self.gamma is not None:
            lead = tuple(range(dy.ndim - len(self._axes)))
            if self.gamma.trainable:
                self.gamma.accumulate(xp.sum(dy * self._u, axis=lead))
            du = dy * upcast(xp, self.gamma.value)
        u = self._u
        dx = (du - u * xp.mean(du * u, axis=self._axes, keepdims=True)) * self._r
        return xp.astype(dx, self._in_dtype, copy=False)

    def get_config(self) -> dict:
        """Constructor arguments."""
        return {"normalized_shape": list(self.normalized_shape), "eps": self.eps,
                "elementwise_affine": self.gamma is not None,
                "dtype": dtype_name(self._dtype)}

    def __repr__(self) -> str:
        return f"RMSNorm({self.normalized_shape})"


class GroupNorm(Layer):
    """Normalize each sample's channels in `num_groups` groups (over the
    group's channels and every spatial position), then scale and shift
    each channel: ``torch.nn.GroupNorm`` on ``(N, C, *)``. One group is
    LayerNorm over ``(C, *)``; ``C`` groups is InstanceNorm.

    Parameters
    ----------
    num_groups : int
        Must divide `num_channels`.
    num_channels : int
        ``C``, axis 1 of the input.
    eps : float
        Added to each group's variance.
    affine : bool
        Learn ``gamma`` and ``beta``, one per channel.
    backend, dtype : optional

    Notes
    -----
    Per group ``xhat = (x - mean) / sqrt(var + eps)`` (biased variance);
    ``y = xhat gamma_c + beta_c``. Backward: ``dxhat = dy gamma_c``, then
    LayerNorm's ``dx = (dxhat - mean(dxhat) - xhat mean(dxhat xhat)) /
    sqrt(var + eps)`` within each group; ``dgamma = sum(dy xhat)`` and
    ``dbeta = sum(dy)`` over the batch and positions.

    Examples
    --------
    >>> import portnn
    >>> norm = portnn.GroupNorm(2, 4)
    >>> x = portnn.get_backend().xp.ones((3, 4, 5, 5), dtype=norm.gamma.dtype)
    >>> norm(x).shape
    (3, 4, 5, 5)
    """

    _cache_attrs = ("_xhat", "_inv_std", "_in_dtype")

    def __init__(self, num_groups: int, num_channels: int, eps: float = 1e-5,
                 affine: bool = True, *, backend=None, dtype=None):
        super().__init__(backend)
        for arg, v in (("num_groups", num_groups), ("num_channels", num_channels)):
            if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
                msg = f"GroupNorm: {arg} must be a positive int, got {v!r}"
                raise ValueError(msg)
        if num_channels % num_groups:
            msg = (f"GroupNorm: num_groups ({num_groups}) must divide num_channels "
                   f"({num_channels})")
            raise ValueError(msg)
        self.num_groups, self.num_channels, self.eps = num_groups, num_channels, eps
        self._dtype = float_dtype(self.backend, dtype)
        kw = {"backend": self.backend, "dtype": self._dtype}
        self.gamma = self.beta = None
        if affine:
            self.gamma = self.add_parameter("gamma", initializers.ones(
                (num_channels,), **kw))
            self.beta = self.add_parameter("beta", initializers.zeros(
                (num_channels,), **kw))

    def _channel_shape(self, x):
        return (1, self.num_channels) + (1,) * (x.ndim - 2)

    def forward(self, x, training=False):
        if x.ndim < 2 or x.shape[1] != self.num_channels:
            msg = (f"GroupNorm: expected input (batch, {self.num_channels}, ...), "
                   f"got shape {tuple(x.shape)}")
            raise ValueError(msg)
        xp = namespace(x)
        self._in_dtype = x.dtype
        shape = tuple(x.shape)
        g = xp.reshape(upcast(xp, x), (shape[0], self.num_groups, -1))
        gc = g - xp.mean(g, axis=2, keepdims=True)
        self._inv_std = 1.0 / xp.sqrt(xp.mean(gc * gc, axis=2, keepdims=True)
                                      + self.eps)
        self._xhat = xp.reshape(gc * self._inv_std, shape)
        y = self._xhat
        if self.gamma is not None:
            cs = self._channel_shape(x)
            y = (y * xp.reshape(upcast(xp, self.gamma.value), cs)
                 + xp.reshape(upcast(xp, self.beta.value), cs))
        return xp.astype(y, self._in_dtype, copy=False)

    def backward(self, dy):
        xp = namespace(dy)
        dy = upcast(xp, dy)
        shape = tuple(dy.shape)
        dxhat = dy
        if self.gamma is not None:
            others = (0, *range(2, dy.ndim))
            if self.gamma.trainable:
                self.gamma.accumulate(xp.sum(dy * self._xhat, axis=others))
                self.beta.accumulate(xp.sum(dy, axis=others))
            dxhat = dy * xp.reshape(upcast(xp, self.gamma.value),
                                    self._channel_shape(dy))
        grouped = (shape[0], self.num_groups, -1)
        dx = _normalize_backward(xp.reshape(dxhat, grouped),
                                 xp.reshape(self._xhat, grouped), self._inv_std, (2,))
        return xp.astype(xp.reshape(dx, shape), self._in_dtype, copy=False)

    def get_config(self) -> dict:
        """Constructor arguments."""
        return {"num_groups": self.num_groups, "num_channels": self.num_channels,
                "eps": self.eps, "affine": self.gamma is not None,
                "dtype": dtype_name(self._dtype)}

    def __repr__(self) -> str:
        return f"GroupNorm({self.num_groups}, {self.num_channels})"
