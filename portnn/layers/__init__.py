"""Layers, each with a hand-written backward next to its forward."""

from __future__ import annotations

from .activations import ELU, GELU, Identity, LeakyReLU, ReLU, Sigmoid, Softmax, Tanh
from .base import Layer
from .dense import Dense
from .dropout import Dropout
from .sequential import Sequential

__all__ = ["Layer", "Dense", "Dropout", "Sequential", "Identity", "Sigmoid", "Tanh",
           "ReLU", "LeakyReLU", "ELU", "GELU", "Softmax"]
