"""ReversibleEmbedding beyond its oracle and gradchecks: one table in
checkpoints, the optimizer and the summary; masks; clear errors."""

from __future__ import annotations

import numpy as np
import pytest

import portnn

from .conftest import to_np


def _lm(tie_weights=True, mask_zero=False):
    ids = portnn.Input((None,), dtype="int64")
    table = portnn.ReversibleEmbedding(9, 4, tie_weights=tie_weights,
                                       mask_zero=mask_zero)
    h = portnn.LSTM(4, 4)(table(ids))
    return portnn.Model(inputs=ids, outputs=table(h, reverse=True))


def _data():
    rs = np.random.default_rng(0)
    x = rs.integers(1, 9, (16, 5))
    return x, np.roll(x, -1, axis=1)


def test_a_tied_table_is_stored_trained_and_counted_once(backend, tmp_path):
    with portnn.use_backend(backend.spec):
        portnn.seed(0)
        model = _lm()
        model.fit(*_data(), loss="cross_entropy", optimizer="adam", epochs=2,
                  batch_size=8, verbose=0)
        # the table once, and the LSTM's four
        assert len(model.optimizer.params) == len(model.parameters()) == 5
        assert model.num_parameters() == 9 * 4 + 4 * (4 * 4 + 4 * 4 + 2 * 4)
        model.save(tmp_path / "lm.safetensors")
        x = _data()[0]
        expected = to_np(model.predict(x))
    loaded = portnn.load(tmp_path / "lm.safetensors", backend="numpy")
    assert repr(loaded) == repr(model)
    np.testing.assert_allclose(to_np(loaded.predict(x)), expected, rtol=1e-5,
                               atol=1e-6)
    assert len(loaded.parameters()) == 5  # still one table, used twice


def test_untied_has_its_own_output_table():
    model = _lm(tie_weights=False)
    assert model.num_parameters() == 2 * 9 * 4 + 4 * (4 * 4 + 4 * 4 + 2 * 4)
    assert repr(portnn.ReversibleEmbedding(9, 4, tie_weights=False)) == (
        "ReversibleEmbedding(9, 4, tie_weights=False)")


def test_the_mask_passes_through_the_reverse_call():
    model = _lm(mask_zero=True)
    x, y = _data()
    x[:, -2:] = 0  # padding: left out of the loss
    logs = model.fit(x, y, loss="cross_entropy", epochs=1, verbose=0)
    assert np.isfinite(logs.history["loss"][0])
    with pytest.raises(ValueError, match="ReversibleEmbedding"):
        ids = portnn.Input((None,), dtype="int64")
        table = portnn.ReversibleEmbedding(9, 4)
        table(portnn.Dense(5)(table(ids)), reverse=True)  # 5 != embedding_dim 4


def test_wrong_vectors_name_the_expected_shape():
    table = portnn.ReversibleEmbedding(9, 4)
    with pytest.raises(ValueError, match=r"expected vectors \(\.\.\., 4\), got shape "
                       r"\(2, 3\)"):
        table(np.ones((2, 3), np.float32), reverse=True)
    with pytest.raises(TypeError, match="tie_weights must be True or False"):
        portnn.ReversibleEmbedding(9, 4, tie_weights="yes")
