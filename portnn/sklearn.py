"""scikit-learn estimators backed by portnn: `MLPClassifier`, `MLPRegressor`.

They follow scikit-learn's estimator contract (``get_params``, ``fit``,
``predict``, ``score``; they pass ``parametrize_with_checks``), so they work
in ``Pipeline`` and ``GridSearchCV``. With ``backend="torch"`` or
``"cupy"`` they also accept that library's arrays and return predictions
of the same kind.

This module is the bridge to scikit-learn's host (NumPy) world, so it may
use NumPy; the network underneath is portnn's array-API code.
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, column_or_1d, validate_data

import portnn

from .backends import get as get_backend_by_name
from .random import Generator

__all__ = ["MLPClassifier", "MLPRegressor"]

_ACTIVATIONS = ("relu", "tanh", "sigmoid", "gelu", "elu", "leaky_relu", "identity")
_OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop", "adagrad")


class _BaseMLP(BaseEstimator):
    def __init__(self, hidden_layer_sizes=(100,), activation="relu",
                 optimizer="adam", learning_rate=1e-3, alpha=0.0, epochs=100,
                 batch_size=32, early_stopping=False, validation_fraction=0.1,
                 patience=10, random_state=None, backend="numpy"):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.optimizer = optimizer
        self.learning_rate = learning_rate
        self.alpha = alpha
        self.epochs = epochs
        self.batch_size = batch_size
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.patience = patience
        self.random_state = random_state
        self.backend = backend

    # -- input handling -----------------------------------------------------------
    def _backend(self):
        return get_backend_by_name(self.backend)

    def _native(self, X) -> bool:
        """Whether X is already an array of the selected (non-NumPy) backend."""
        b = self._backend()
        return b.name != "numpy" and b.owns(X)

    def _check_X(self, X, reset: bool):
        if self._native(X):
            if X.ndim != 2:
                msg = f"Expected 2D array, got {X.ndim}D array instead"
                raise ValueError(msg)
            if reset:
                self.n_features_in_ = int(X.shape[1])
            elif X.shape[1] != self.n_features_in_:
                msg = (
                    f"X has {X.shape[1]} features, but {type(self).__name__} is "
                    f"expecting {self.n_features_in_} features as input."
                )
                raise ValueError(msg)
            return X
        X = validate_data(self, X, reset=reset, dtype=[np.float32, np.float64])
        return self._backend().asarray(X.astype(np.float32, copy=False))

    def _check_params(self):
        sizes = self.hidden_layer_sizes
        sizes = (sizes,) if isinstance(sizes, int) else tuple(sizes)
        if any(not isinstance(s, (int, np.integer)) or s < 1 for s in sizes):
            msg = (
                "hidden_layer_sizes must be positive ints, got "
                f"{self.hidden_layer_sizes!r}"
            )
            raise ValueError(msg)
        if self.activation not in _ACTIVATIONS:
            msg = f"activation must be one of {_ACTIVATIONS}, got {self.activation!r}"
            raise ValueError(msg)
        if self.optimizer not in _OPTIMIZERS:
            msg = f"optimizer must be one of {_OPTIMIZERS}, got {self.optimizer!r}"
            raise ValueError(msg)
        for name in ("epochs", "batch_size", "patience"):
            v = getattr(self, name)
            if not isinstance(v, (int, np.integer)) or v < 1:
                msg = f"{name} must be a positive int, got {v!r}"
                raise ValueError(msg)
        if not 0.0 < self.validation_fraction < 1.0:
            msg = (
                "validation_fraction must be in (0, 1), got "
                f"{self.validation_fraction!r}"
            )
            raise ValueError(msg)
        return sizes

    # -- the network ----------------------------------------------------------------
    def _fit_network(self, X, y, n_out, loss):
        sizes = self._check_params()
        seed = int(check_random_state(self.random_state).randint(0, 2**31 - 1))
        rng = Generator(seed)
        backend = self._backend()
        with portnn.use_backend(backend):
            layers, n_in = [], X.shape[1]
            for size in sizes:
                layers.append(portnn.Dense(n_in, int(size), activation=self.activation,
                                           rng=rng))
                n_in = int(size)
            layers.append(portnn.Dense(n_in, n_out, rng=rng))
            model = portnn.Sequential(*layers)
            opt = portnn.optim.get(self.optimizer, model.parameters(),
                                   lr=self.learning_rate)
            if self.alpha:
                opt.weight_decay = float(self.alpha)
            callbacks, fit_kwargs = [], {}
            if self.early_stopping:
                if X.shape[0] < 2:
                    msg = "early_stopping needs at least 2 samples"
                    raise ValueError(msg)
                perm = rng.permutation(X.shape[0], backend=backend)
                X = backend.xp.take(X, perm, axis=0)
                y = backend.xp.take(y, perm, axis=0)
                fit_kwargs["validation_split"] = self.validation_fraction
                callbacks.append(portnn.EarlyStopping(
                    "val_loss", patience=self.patience, restore_best_weights=True))
            history = model.fit(X, y, loss=loss, optimizer=opt, epochs=self.epochs,
                                batch_size=min(self.batch_size, X.shape[0]),
                                callbacks=callbacks, metrics=None, verbose=0,
                                rng=rng, **fit_kwargs)
        self.model_ = model
        self._predictor_ = _float64_twin(model)
        self.loss_curve_ = history["loss"]
        self.n_iter_ = len(history.epoch)
        return self

    def _forward(self, X):
        check_is_fitted(self, "model_")
        native = self._native(X)
        X = self._check_X(X, reset=False)
        # NOTE: predictions run in float64 on the float32-trained weights.
        # float32 GEMMs round differently for different batch sizes, and
        # scikit-learn requires predict(X[subset]) == predict(X)[subset]. The
        # float64 copy is made once, at fit: concurrent predictions share it
        # and never touch model_, so they need no lock.
        out = self._predictor_.predict(X, batch_size=1024)
        return out, native

    def _out(self, arr, native):
        # scikit-learn's world is float64; the network computes in float32.
        return arr if native else self._backend().to_numpy(arr).astype(np.float64)

def _float64_twin(model):
    """A copy of `model` with float64 weights, for predictions."""
    from .layers.registry import layer_from_json, layer_to_json

    backend = model.backend
    xp = backend.xp
    with portnn.use_backend(backend), portnn.init.deferred():
        twin = layer_from_json(layer_to_json(model), backend)
    state = model.state_dict()
    for name, owner, key in twin._named_state():
        value = xp.astype(state[name], xp.float64)
        if key is None:
            owner.value = value
        else:
            owner._buffers[key] = value
    return twin


class MLPClassifier(ClassifierMixin, _BaseMLP):
    """A multilayer-perceptron classifier trained with portnn.

    Parameters
    ----------
    hidden_layer_sizes : tuple of int, default (100,)
        Width of each hidden layer.
    activation : str, default "relu"
        Hidden activation: relu, tanh, sigmoid, gelu, elu, leaky_relu, identity.
    optimizer : str, default "adam"
        adam, adamw, sgd, rmsprop or adagrad.
    learning_rate : float, default 1e-3
    alpha : float, default 0
        Weight decay (L2 for adam/sgd/rmsprop/adagrad, decoupled for adamw).
    epochs : int, default 100
    batch_size : int, default 32
    early_stopping : bool, default False
        Hold out `validation_fraction` and stop after `patience` epochs
        without improvement of the validation loss (best weights kept).
    validation_fraction : float, default 0.1
    patience : int, default 10
    random_state : int, RandomState or None
        Seeds the initial weights and the shuffles (same on every backend).
    backend : str, default "numpy"
        portnn backend to train on ("torch", "cupy", ...).

    Attributes
    ----------
    classes_ : ndarray
    model_ : portnn.Sequential
    loss_curve_ : list of float
    n_iter_ : int
        Epochs run.

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from sklearn.pipeline import make_pipeline
    >>> from sklearn.preprocessing import StandardScaler
    >>> from portnn.sklearn import MLPClassifier
    >>> X, y = load_iris(return_X_y=True)
    >>> clf = make_pipeline(StandardScaler(),
    ...                     MLPClassifier((16,), learning_rate=0.01, epochs=50,
    ...                                   random_state=0))
    >>> clf.fit(X, y).score(X, y) > 0.9
    True
    """

    def fit(self, X, y):
        """Train on `X` (n_samples, n_features) and labels `y`."""
        if self._native(X):
            X = self._check_X(X, reset=True)
            y_host = self._backend().to_numpy(y)
        else:
            X_host, y_host = validate_data(self, X, y, dtype=[np.float32, np.float64])
            X = self._backend().asarray(X_host.astype(np.float32, copy=False))
        y_host = column_or_1d(y_host, warn=True)
        check_classification_targets(y_host)
        self.classes_, y_enc = np.unique(y_host, return_inverse=True)
        y_dev = self._backend().asarray(y_enc.astype(np.int64))
        return self._fit_network(X, y_dev, len(self.classes_), portnn.CrossEntropy())

    def predict_proba(self, X):
        """Class probabilities, shape (n_samples, n_classes)."""
        logits, native = self._forward(X)
        return self._out(portnn.Softmax()(logits), native)

    def predict(self, X):
        """Most likely class of each sample."""
        logits, native = self._forward(X)
        xp = self._backend().xp
        idx = self._backend().to_numpy(xp.argmax(logits, axis=1))
        labels = self.classes_[idx]
        if native and np.issubdtype(labels.dtype, np.number):
            return self._backend().asarray(labels)
        return labels


class MLPRegressor(RegressorMixin, _BaseMLP):
    """A multilayer-perceptron regressor trained with portnn (mean squared
    error). Parameters as :class:`MLPClassifier`; `y` may have several
    columns.

    Examples
    --------
    >>> import numpy as np
    >>> from portnn.sklearn import MLPRegressor
    >>> X = np.linspace(-1, 1, 200).reshape(-1, 1)
    >>> reg = MLPRegressor(hidden_layer_sizes=(32,), epochs=100, random_state=0)
    >>> reg.fit(X, X[:, 0] ** 2).score(X, X[:, 0] ** 2) > 0.9
    True
    """

    def fit(self, X, y):
        """Train on `X` (n_samples, n_features) and targets `y`."""
        b = self._backend()
        if self._native(X):
            X = self._check_X(X, reset=True)
            y_host = b.to_numpy(y)
        else:
            X_host, y_host = validate_data(self, X, y, dtype=[np.float32, np.float64],
                                           multi_output=True, y_numeric=True)
            X = b.asarray(X_host.astype(np.float32, copy=False))
        y_host = np.asarray(y_host, dtype=np.float32)
        self._y_1d = y_host.ndim == 1
        y2 = y_host.reshape(len(y_host), -1)
        return self._fit_network(X, b.asarray(y2), y2.shape[1], portnn.MSE())

    def predict(self, X):
        """Predicted targets, shape (n_samples,) or (n_samples, n_outputs)."""
        out, native = self._forward(X)
        if self._y_1d:
            out = self._backend().xp.reshape(out, (-1,))
        return self._out(out, native)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags
