"""Layers, each with a hand-written backward next to its forward."""

from __future__ import annotations

from .activations import (
    ELU,
    GELU,
    SELU,
    Identity,
    LeakyReLU,
    LogSoftmax,
    Mish,
    PReLU,
    ReLU,
    Sigmoid,
    SiLU,
    Softmax,
    Softplus,
    Swish,
    Tanh,
)
from .attention import MultiHeadAttention
from .base import Layer
from .bidirectional import Bidirectional
from .conv import Conv1D, Conv2D
from .conv_transpose import Conv1DTranspose, Conv2DTranspose
from .dense import Dense
from .dropout import Dropout, SpatialDropout1D, SpatialDropout2D
from .embedding import Embedding
from .graph import Functional
from .masking import Masking
from .merge import Add, Average, Concatenate, Multiply, Subtract
from .normalization import BatchNorm1D, BatchNorm2D, GroupNorm, LayerNorm, RMSNorm
from .pooling import (
    AvgPool1D,
    AvgPool2D,
    GlobalAvgPool1D,
    GlobalAvgPool2D,
    GlobalMaxPool1D,
    GlobalMaxPool2D,
    MaxPool1D,
    MaxPool2D,
)
from .recurrent import GRU, LSTM, RNN
from .registry import register_builtins
from .resampling import (
    Cropping1D,
    Cropping2D,
    UpSampling1D,
    UpSampling2D,
    ZeroPadding1D,
    ZeroPadding2D,
)
from .reshape import Flatten, Permute, Reshape
from .residual import Residual
from .reversible_embedding import ReversibleEmbedding
from .sequential import Sequential
from .symbolic import Input, SymbolicTensor
from .transformer import (
    PositionalEncoding,
    TransformerDecoderLayer,
    TransformerEncoderLayer,
)

__all__ = ["Layer", "Dense", "Dropout", "SpatialDropout1D",
           "SpatialDropout2D", "Sequential", "Identity", "Sigmoid", "Tanh",
           "ReLU", "LeakyReLU", "ELU", "GELU", "Softmax", "SiLU", "Swish",
           "Softplus", "Mish", "SELU", "PReLU", "LogSoftmax",
           "Conv1D", "Conv2D", "Conv1DTranspose", "Conv2DTranspose",
           "MaxPool1D", "MaxPool2D", "AvgPool1D", "AvgPool2D",
           "GlobalAvgPool1D", "GlobalAvgPool2D", "GlobalMaxPool1D",
           "GlobalMaxPool2D", "ZeroPadding1D", "ZeroPadding2D", "Cropping1D",
           "Cropping2D", "UpSampling1D", "UpSampling2D", "Permute", "Masking",
           "Flatten", "Reshape",
           "BatchNorm1D", "BatchNorm2D",
           "LayerNorm", "RMSNorm", "GroupNorm", "Embedding", "ReversibleEmbedding",
           "RNN", "LSTM", "GRU",
           "Bidirectional",
           "MultiHeadAttention",
           "TransformerEncoderLayer", "TransformerDecoderLayer",
           "PositionalEncoding", "Residual",
           "Functional", "Input", "SymbolicTensor", "Concatenate", "Add",
           "Subtract", "Multiply", "Average"]

register_builtins(globals()[name] for name in __all__)
