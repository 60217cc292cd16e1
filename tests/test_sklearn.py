"""portnn.sklearn estimators against scikit-learn's own estimator checks."""

from __future__ import annotations

import numpy as np
import pytest

sklearn = pytest.importorskip("sklearn")

from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

from portnn.sklearn import MLPClassifier, MLPRegressor  # noqa: E402

# Small and quick, still well above the checks' accuracy bars.
FAST = {"hidden_layer_sizes": (32,), "epochs": 60, "random_state": 0}


@parametrize_with_checks([MLPClassifier(**FAST), MLPRegressor(**FAST)])
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


def _digits():
    from sklearn.datasets import load_digits

    return load_digits(return_X_y=True)


def test_pipeline_and_grid_search():
    from sklearn.model_selection import GridSearchCV, train_test_split
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X, y = _digits()
    X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=0.2, stratify=y,
                                              random_state=0)
    pipe = make_pipeline(StandardScaler(), MLPClassifier(epochs=20, random_state=0))
    grid = GridSearchCV(pipe, {"mlpclassifier__hidden_layer_sizes": [(16,), (64,)]},
                        cv=2)
    grid.fit(X_tr, y_tr)
    assert grid.best_params_["mlpclassifier__hidden_layer_sizes"] in [(16,), (64,)]
    assert grid.score(X_te, y_te) > 0.93


def test_string_labels_and_probabilities():
    X, y = _digits()
    names = np.array(["zero", "one", "two", "three", "four", "five", "six",
                      "seven", "eight", "nine"])[y]
    clf = MLPClassifier(hidden_layer_sizes=(32,), epochs=10, random_state=0)
    clf.fit(X / 16.0, names)
    proba = clf.predict_proba(X[:5] / 16.0)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-6)
    assert set(clf.predict(X / 16.0)) <= set(names)


def test_same_random_state_same_model_on_every_backend(backend):
    X, y = _digits()
    X = (X / 16.0)[:300]
    y = y[:300]
    ref = MLPClassifier(hidden_layer_sizes=(16,), epochs=5, random_state=3).fit(X, y)
    got = MLPClassifier(hidden_layer_sizes=(16,), epochs=5, random_state=3,
                        backend=backend.spec).fit(X, y)
    np.testing.assert_allclose(got.loss_curve_, ref.loss_curve_, rtol=1e-4)
    assert (got.predict(X) == ref.predict(X)).mean() > 0.99


def test_early_stopping_stops(backend):
    X, y = _digits()
    clf = MLPClassifier(epochs=500, early_stopping=True, patience=3, random_state=0,
                        backend=backend.spec)
    clf.fit(X / 16.0, y)
    assert clf.n_iter_ < 500


def test_torch_input_with_torch_backend(torch):
    X, y = _digits()
    Xt = torch.tensor(X / 16.0, dtype=torch.float32)
    yt = torch.tensor(y)
    clf = MLPClassifier(hidden_layer_sizes=(32,), epochs=10, random_state=0,
                        backend="torch").fit(Xt, yt)
    pred = clf.predict(Xt)
    assert isinstance(pred, torch.Tensor)
    assert (pred.numpy() == y).mean() > 0.9
    reg = MLPRegressor(hidden_layer_sizes=(16,), epochs=5, random_state=0,
                       backend="torch").fit(Xt, yt.double())
    assert isinstance(reg.predict(Xt), torch.Tensor)


@pytest.mark.parametrize("spec", ["numpy", "torch"])
def test_predictions_are_thread_safe(spec):
    import threading

    if spec == "torch":
        pytest.importorskip("torch")
    rs = np.random.default_rng(0)
    X = rs.normal(size=(300, 5))
    y = (X[:, 0] > 0).astype(int)
    clf = MLPClassifier((16,), epochs=3, random_state=0, backend=spec).fit(X, y)
    ref = clf.predict_proba(X)
    problems = []

    def work():
        for _ in range(150):
            try:
                if not np.allclose(clf.predict_proba(X), ref):
                    problems.append("different result")
            except Exception as exc:  # torch: "expected m1 and m2 ..." before
                problems.append(repr(exc))

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert problems == []
    # numpy's model stayed in float64 for good before
    assert "float32" in str(clf.model_.parameters()[0].dtype)
