"""Ready-made networks of the examples and the command line.

Each builder returns an untrained :class:`portnn.Sequential` on the current
backend; ``examples/`` and ``portnn train`` share them, so the network a
checkpoint was trained with is defined in one place.
"""

from __future__ import annotations

from . import layers as L


def digits_mlp() -> L.Sequential:
    """64-256-128-10 MLP with ReLU and dropout 0.3, for 8x8 digits given as
    64 standardized features.

    Examples
    --------
    >>> digits_mlp().num_parameters()
    50826
    """
    return L.Sequential(
        L.Dense(64, 256), L.ReLU(), L.Dropout(0.3),
        L.Dense(256, 128), L.ReLU(), L.Dropout(0.3),
        L.Dense(128, 10),
    )


def digits_cnn(width: int = 32) -> L.Sequential:
    """A small CNN for ``(N, 1, 8, 8)`` digit images scaled to [0, 1].

    Two 3x3 convolutions at `width` channels and one at ``2 * width``, each
    followed by batch normalization and ReLU; max-pools after the second
    and third (8x8 -> 4x4 -> 2x2); dropout 0.3 and a dense classifier.

    Examples
    --------
    >>> digits_cnn(8)[-1]
    Dense(64, 10)
    """
    return L.Sequential(
        L.Conv2D(1, width, 3, padding=1), L.BatchNorm2D(width), L.ReLU(),
        L.Conv2D(width, width, 3, padding=1), L.BatchNorm2D(width), L.ReLU(),
        L.MaxPool2D(2),
        L.Conv2D(width, 2 * width, 3, padding=1), L.BatchNorm2D(2 * width),
        L.ReLU(), L.MaxPool2D(2),
        L.Flatten(), L.Dropout(0.3), L.Dense(2 * width * 4, 10),
    )
