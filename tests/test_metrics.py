"""Metrics accumulated on the device, checked against scikit-learn on the
same predictions, on every backend."""

from __future__ import annotations

import numpy as np
import pytest

import portnn
from portnn.training import metrics as M

sk = pytest.importorskip("sklearn.metrics")


def _run(backend, names, pred, target, batch=7, loss=None):
    """Accumulate `names` over batches of `pred` and `target`; one read."""
    from portnn.training.meters import Meters

    loss = loss or portnn.CrossEntropy()
    meters = Meters(backend, M.get_metrics(names, loss))
    p, t = backend.asarray(pred), backend.asarray(target)
    n = pred.shape[0]
    for lo in range(0, n, batch):
        rows = slice(lo, min(n, lo + batch))
        meters.update(backend.asarray(0.0), p[rows, ...], t[rows, ...])
    logs, _ = meters.read()
    return logs


def _multiclass(n=200, c=5, seed=0):
    rs = np.random.default_rng(seed)
    y = rs.integers(0, c, n)
    logits = rs.normal(size=(n, c)) + 2.0 * np.eye(c)[y] * (rs.random(n) > 0.3)[:, None]
    return logits.astype(np.float32), y


CLASSIFICATION = {
    "accuracy": lambda y, p, s: sk.accuracy_score(y, p),
    "top_k_accuracy": lambda y, p, s: sk.top_k_accuracy_score(y, s, k=2,
                                                              labels=range(5)),
    "top_3_accuracy": lambda y, p, s: sk.top_k_accuracy_score(y, s, k=3,
                                                              labels=range(5)),
    "precision_macro": lambda y, p, s: sk.precision_score(y, p, average="macro",
                                                          zero_division=0),
    "precision_micro": lambda y, p, s: sk.precision_score(y, p, average="micro"),
    "precision_weighted": lambda y, p, s: sk.precision_score(
        y, p, average="weighted", zero_division=0),
    "recall_macro": lambda y, p, s: sk.recall_score(y, p, average="macro",
                                                    zero_division=0),
    "recall_micro": lambda y, p, s: sk.recall_score(y, p, average="micro"),
    "f1_macro": lambda y, p, s: sk.f1_score(y, p, average="macro", zero_division=0),
    "f1_micro": lambda y, p, s: sk.f1_score(y, p, average="micro"),
    "f1_weighted": lambda y, p, s: sk.f1_score(y, p, average="weighted",
                                               zero_division=0),
}


def test_multiclass_metrics_match_scikit_learn(backend):
    scores, y = _multiclass()
    logs = _run(backend, list(CLASSIFICATION), scores, y)
    guess = scores.argmax(1)
    for name, ref in CLASSIFICATION.items():
        assert logs[name] == pytest.approx(ref(y, guess, scores), abs=1e-12), name


def test_a_class_never_seen_is_left_out_of_the_macro_average_as_sklearn(backend):
    scores, y = _multiclass(c=5)
    y = np.where(y == 4, 0, y)  # class 4: never true ...
    scores[:, 4] = -10.0        # ... never predicted
    logs = _run(backend, ["f1_macro", "precision_macro"], scores, y)
    guess = scores.argmax(1)
    assert logs["f1_macro"] == pytest.approx(
        sk.f1_score(y, guess, average="macro", zero_division=0))


@pytest.mark.parametrize("head", ["logit", "probability", "two_logits"])
def test_binary_metrics_match_scikit_learn(backend, head):
    rs = np.random.default_rng(1)
    y = rs.integers(0, 2, 150)
    z = rs.normal(size=150) + 1.5 * (2 * y - 1) * (rs.random(150) > 0.4)
    z[::10] = z[1::10][: len(z[::10])]  # ties for the AUC ranks
    if head == "logit":
        pred, loss, threshold = z[:, None], portnn.BCEWithLogits(), 0.0
    elif head == "probability":
        pred, loss, threshold = 1 / (1 + np.exp(-z[:, None])), portnn.BCE(), 0.5
    else:
        pred, loss, threshold = np.stack([-z / 2, z / 2], 1), portnn.CrossEntropy(), 0
    target = y[:, None].astype(np.float64) if head != "two_logits" else y
    logs = _run(backend, ["precision", "recall", "f1", "roc_auc", "accuracy"],
                pred, target, loss=loss)
    guess = (z > threshold).astype(int) if head != "probability" else (
        1 / (1 + np.exp(-z)) > 0.5).astype(int)
    assert logs["precision"] == pytest.approx(sk.precision_score(y, guess))
    assert logs["recall"] == pytest.approx(sk.recall_score(y, guess))
    assert logs["f1"] == pytest.approx(sk.f1_score(y, guess))
    assert logs["accuracy"] == pytest.approx(sk.accuracy_score(y, guess))
    assert logs["roc_auc"] == pytest.approx(sk.roc_auc_score(y, z), abs=1e-12)


def test_regression_metrics_match_scikit_learn(backend):
    rs = np.random.default_rng(2)
    y = rs.normal(size=(90, 3)) * [1.0, 10.0, 0.1] + [0.0, 1000.0, -5.0]
    pred = y + rs.normal(size=y.shape) * [0.5, 2.0, 0.1]
    names = ["r2", "neg_mean_squared_error", "mean_squared_error", "mae",
             "neg_mean_absolute_error", "neg_root_mean_squared_error"]
    logs = _run(backend, names, pred, y, batch=11, loss=portnn.MSE())
    assert logs["r2"] == pytest.approx(sk.r2_score(y, pred), abs=1e-10)
    assert logs["mean_squared_error"] == pytest.approx(sk.mean_squared_error(y, pred))
    assert logs["neg_mean_squared_error"] == -logs["mean_squared_error"]
    assert logs["mae"] == pytest.approx(sk.mean_absolute_error(y, pred))
    # the mean of the per-output RMSEs, not the root of the pooled mean
    assert logs["neg_root_mean_squared_error"] == pytest.approx(
        -sk.root_mean_squared_error(y, pred))
    assert logs["neg_root_mean_squared_error"] != pytest.approx(
        -np.sqrt(sk.mean_squared_error(y, pred)))
    one = _run(backend, ["r2"], pred[:, :1], y[:, 0], loss=portnn.MSE())
    assert one["r2"] == pytest.approx(sk.r2_score(y[:, 0], pred[:, 0]), abs=1e-10)


def test_a_callable_metric_is_averaged_over_samples(backend):
    scores, y = _multiclass(n=50)

    def margin(pred, target):
        xp = portnn._namespace.namespace(pred)
        return xp.mean(xp.max(pred, axis=-1))

    logs = _run(backend, [margin], scores, y, batch=8)
    assert logs["margin"] == pytest.approx(scores.max(1).mean(), rel=1e-6)


def test_fit_and_evaluate_report_exact_epoch_figures(backend):
    portnn.seed(0)
    rs = np.random.default_rng(3)
    x = rs.normal(size=(120, 6)).astype(np.float32)
    y = (x[:, 0] + x[:, 1] > 0).astype(np.int64) + (x[:, 2] > 1)
    model = portnn.Sequential(portnn.Dense(6, 16), portnn.ReLU(), portnn.Dense(16, 3))
    model.compile(loss="cross_entropy", metrics=["accuracy", "f1_macro",
                                                 "top_2_accuracy"])
    h = model.fit(x, y, epochs=3, batch_size=16, verbose=0)
    assert {"f1_macro", "top_2_accuracy"} <= set(h.history)
    logs = model.evaluate(x, y, batch_size=7)
    guess = portnn.backends.get(backend.spec).to_numpy(model.predict(x)).argmax(1)
    assert logs["f1_macro"] == pytest.approx(sk.f1_score(y, guess, average="macro"))
    assert logs["accuracy"] == pytest.approx(sk.accuracy_score(y, guess))


def test_unknown_metric_names_list_the_known_ones():
    with pytest.raises(ValueError, match="unknown metric 'f2'.*roc_auc"):
        M.get("f2")
    with pytest.raises(ValueError, match="is for binary tasks"):
        _run(portnn.backends.get("numpy"), ["f1"], *_multiclass())


def test_top_k_breaks_ties_as_scikit_learn(backend):
    # all-equal scores: sklearn ranks the higher class index first, so only
    # the last class is a top-1 hit (ties are not all hits)
    y = np.arange(20) % 20
    scores = np.zeros((20, 20), np.float32)
    logs = _run(backend, ["top_1_accuracy", "top_3_accuracy"], scores, y)
    assert logs["top_1_accuracy"] == pytest.approx(
        sk.top_k_accuracy_score(y, scores, k=1, labels=range(20)))
    assert logs["top_1_accuracy"] == pytest.approx(1 / 20)
    assert logs["top_3_accuracy"] == pytest.approx(
        sk.top_k_accuracy_score(y, scores, k=3, labels=range(20)))
    # partial ties
    rs = np.random.default_rng(3)
    scores = rs.integers(0, 3, size=(60, 5)).astype(np.float32)
    y = rs.integers(0, 5, 60)
    logs = _run(backend, ["top_2_accuracy"], scores, y)
    assert logs["top_2_accuracy"] == pytest.approx(
        sk.top_k_accuracy_score(y, scores, k=2, labels=range(5)))


def test_roc_auc_refuses_nan_scores(backend):
    z = np.array([0.1, np.nan, 0.8, 0.3], np.float32)
    y = np.array([0, 1, 1, 0])
    with pytest.raises(ValueError, match="roc_auc: 1 predicted score.*NaN"):
        _run(backend, ["roc_auc"], z, y, loss=portnn.BCEWithLogits())
    with pytest.raises(ValueError):  # the reference refuses them too
        sk.roc_auc_score(y, z)


def _multilabel(shape, seed=4):
    rs = np.random.default_rng(seed)
    y = (rs.random(shape) < 0.3).astype(np.float32)
    logits = (rs.normal(size=shape) + 2.5 * (2 * y - 1) * (rs.random(shape) > 0.2))
    return logits.astype(np.float32), y


def test_binary_losses_score_every_element(backend):
    # (N, 1, H, W) per-pixel logits: accuracy per pixel, not an argmax over W
    logits, y = _multilabel((12, 1, 5, 6))
    names = ["accuracy", "f1", "precision_macro", "recall_micro", "roc_auc"]
    logs = _run(backend, names, logits, y, batch=5, loss=portnn.BCEWithLogits())
    t, p, z = y.ravel(), (logits > 0).ravel(), logits.ravel()
    assert logs["accuracy"] == pytest.approx(sk.accuracy_score(t, p))
    assert logs["accuracy"] > 0.8
    assert logs["f1"] == pytest.approx(sk.f1_score(t, p))
    assert logs["precision_macro"] == pytest.approx(
        sk.precision_score(t, p, average="macro"))
    assert logs["recall_micro"] == pytest.approx(sk.recall_score(t, p, average="micro"))
    assert logs["roc_auc"] == pytest.approx(sk.roc_auc_score(t, z), abs=1e-6)


def test_multilabel_averages_match_scikit_learn(backend):
    logits, y = _multilabel((70, 4))
    y[:, 3] = 0  # a label with no positives (and few predicted)
    probs = 1 / (1 + np.exp(-logits))
    names = ["accuracy", "f1_macro", "f1_micro", "f1_weighted", "precision_macro",
             "recall_weighted"]
    logs = _run(backend, names, probs, y, batch=9, loss=portnn.BCE())
    p = probs > 0.5
    # accuracy is Keras's element-wise binary accuracy
    assert logs["accuracy"] == pytest.approx(np.mean(p == y))
    for name in names[1:]:
        kind, average = name.split("_")
        fn = {"f1": sk.f1_score, "precision": sk.precision_score,
              "recall": sk.recall_score}[kind]
        assert logs[name] == pytest.approx(
            fn(y, p, average=average, zero_division=0)), name
    y[:, 3] = (np.arange(70) % 3 == 0)  # every label both ways for AUC
    logs = _run(backend, ["roc_auc"], logits, y, batch=9, loss=portnn.BCEWithLogits())
    assert logs["roc_auc"] == pytest.approx(sk.roc_auc_score(y, logits), abs=1e-6)
    with pytest.raises(ValueError, match="4 labels.*f1_macro"):
        _run(backend, ["f1"], probs, y, loss=portnn.BCE())


@pytest.mark.parametrize(("name", "greater"), [
    ("val_roc_auc", True), ("val_f1_macro", True), ("val_r2", True),
    ("val_precision_weighted", True), ("recall", True), ("top_3_accuracy", True),
    ("neg_mean_squared_error", True), ("val_neg_root_mean_squared_error", True),
    ("val_loss", False), ("loss", False), ("mse", False), ("val_mae", False),
    ("head_loss", False), ("val_head_f1_micro", True), ("my_acc", True),
    ("my_score", False),
])
def test_direction_comes_from_the_metric(name, greater):
    assert M.greater_is_better(name) is greater
