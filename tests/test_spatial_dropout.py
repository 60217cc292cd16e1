"""Spatial dropout drops whole channels (torch.nn.Dropout1d/2d's rule), with
portnn's own generator: every position of a kept channel is scaled alike."""

from __future__ import annotations

import numpy as np
import pytest

import portnn

from .conftest import to_np


@pytest.mark.parametrize(("layer", "shape"), [
    (portnn.SpatialDropout1D, (64, 32, 7)), (portnn.SpatialDropout2D, (64, 32, 3, 4))])
def test_whole_channels_drop_at_rate_p(backend, layer, shape):
    portnn.seed(0)
    drop = layer(0.25)
    x = backend.xp.ones(shape, dtype=backend.dtype("float32"), device=backend.device)
    y = to_np(drop(x, training=True))
    per_channel = y.reshape(shape[0], shape[1], -1)
    assert (per_channel == per_channel[..., :1]).all()  # one draw per channel
    assert set(np.unique(per_channel)) <= {0.0, np.float32(1 / 0.75)}
    assert abs((per_channel[..., 0] == 0).mean() - 0.25) < 0.05  # 2048 draws
    dx = to_np(drop.backward(backend.asarray(np.ones(shape, np.float32))))
    np.testing.assert_array_equal(dx, y)  # the same mask
    np.testing.assert_array_equal(to_np(drop(x)), to_np(x))  # evaluation: identity


def test_spatial_dropout_names_the_layout():
    with pytest.raises(ValueError, match=r"SpatialDropout2D: expected input \(batch, "
                       r"channels, height, width\), got shape \(2, 3\)"):
        portnn.SpatialDropout2D(0.5)(np.ones((2, 3), np.float32), training=True)
