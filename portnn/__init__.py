"""portnn: a from-scratch neural-network framework written once against the
Python array API, running on NumPy, CuPy, PyTorch and array-api-strict.

Importing portnn imports no array library and probes no GPU; the backend is
created when first used.
"""

from __future__ import annotations

from . import (
    backends,
    checkpoint,
    data,
    distributed,
    init,
    layers,
    losses,
    models,
    ops,
    optim,
    random,
    training,  # after layers: Sequential (a layer) is a training.Model
)
from .backends import get_backend, set_backend, use_backend
from .checkpoint import load
from .config import default_dtype, get_default_dtype, set_default_dtype
from .gradcheck import GradcheckError, gradcheck
from .layers import (
    ELU,
    GELU,
    GRU,
    LSTM,
    RNN,
    SELU,
    Add,
    Average,
    AvgPool1D,
    AvgPool2D,
    BatchNorm1D,
    BatchNorm2D,
    Concatenate,
    Conv1D,
    Conv2D,
    Dense,
    Dropout,
    Embedding,
    Flatten,
    Functional,
    GlobalAvgPool1D,
    GlobalAvgPool2D,
    GroupNorm,
    Identity,
    Input,
    Layer,
    LayerNorm,
    LeakyReLU,
    LogSoftmax,
    Masking,
    MaxPool1D,
    MaxPool2D,
    Mish,
    MultiHeadAttention,
    Multiply,
    PositionalEncoding,
    PReLU,
    ReLU,
    Reshape,
    Residual,
    RMSNorm,
    Sequential,
    Sigmoid,
    SiLU,
    Softmax,
    Softplus,
    SpatialDropout1D,
    SpatialDropout2D,
    Subtract,
    Swish,
    Tanh,
    TransformerEncoderLayer,
)
from .layers.base import no_grad
from .losses import BCE, MAE, MSE, BCEWithLogits, CrossEntropy, Huber, Loss
from .optim import (
    SGD,
    Adagrad,
    Adam,
    AdamW,
    RMSprop,
    clip_grad_norm,
    clip_grad_value,
)
from .parameter import Parameter
from .random import seed
from .training import (
    Callback,
    CSVLogger,
    EarlyStopping,
    History,
    Model,
    ModelCheckpoint,
    ReduceLROnPlateau,
    TrainingDivergedError,
)

__version__ = "0.1.0"


def asarray(x, dtype=None):
    """Convert `x` (list, NumPy array, DLPack producer) to the current backend.

    Examples
    --------
    >>> import portnn
    >>> portnn.asarray([1.0, 2.0]).shape
    (2,)
    """
    return get_backend().asarray(x, dtype=dtype)


__all__ = [
    "__version__",
    "asarray",
    "backends",
    "checkpoint",
    "load",
    "data",
    "distributed",
    "init",
    "layers",
    "losses",
    "models",
    "ops",
    "optim",
    "random",
    "training",
    "get_backend",
    "set_backend",
    "use_backend",
    "default_dtype",
    "get_default_dtype",
    "set_default_dtype",
    "gradcheck",
    "GradcheckError",
    "no_grad",
    "Layer",
    "Dense",
    "Dropout",
    "SpatialDropout1D",
    "SpatialDropout2D",
    "Sequential",
    "Identity",
    "Sigmoid",
    "Tanh",
    "ReLU",
    "LeakyReLU",
    "ELU",
    "GELU",
    "SiLU",
    "Swish",
    "Softplus",
    "Mish",
    "SELU",
    "PReLU",
    "LogSoftmax",
    "Softmax",
    "AvgPool1D",
    "AvgPool2D",
    "BatchNorm1D",
    "BatchNorm2D",
    "Conv1D",
    "Conv2D",
    "Embedding",
    "Flatten",
    "GlobalAvgPool1D",
    "GlobalAvgPool2D",
    "Masking",
    "GRU",
    "LayerNorm",
    "RMSNorm",
    "GroupNorm",
    "LSTM",
    "MaxPool1D",
    "MaxPool2D",
    "MultiHeadAttention",
    "PositionalEncoding",
    "Reshape",
    "Residual",
    "RNN",
    "TransformerEncoderLayer",
    "Input",
    "Functional",
    "Concatenate",
    "Add",
    "Subtract",
    "Multiply",
    "Average",
    "Loss",
    "MSE",
    "MAE",
    "Huber",
    "BCE",
    "BCEWithLogits",
    "CrossEntropy",
    "SGD",
    "Adam",
    "AdamW",
    "RMSprop",
    "Adagrad",
    "clip_grad_norm",
    "clip_grad_value",
    "Parameter",
    "seed",
    "Model",
    "History",
    "Callback",
    "ModelCheckpoint",
    "CSVLogger",
    "EarlyStopping",
    "ReduceLROnPlateau",
    "TrainingDivergedError",
]
