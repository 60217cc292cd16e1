"""A convolutional autoencoder on scikit-learn's 8x8 digits: two strided
convolutions squeeze each image to a 16-number code (4 channels of 2x2),
two transposed convolutions bring it back to 8x8.

The network is trained to reproduce its input (mean squared error on pixels
in [0, 1]); no labels are used. Prints the reconstruction MSE on held-out
images next to two baselines computed here in NumPy: every image replaced
by the mean training image, and PCA with the same 16 numbers per image (the
best any *linear* 16-number code can do). Saves a PNG of held-out originals
above their reconstructions.

    python examples/conv_autoencoder.py --backend numpy
"""

from __future__ import annotations

import sys

import _common
import numpy as np

import portnn

CODE_CHANNELS = 4  # x 2 x 2 = a 16-number code


def build(width: int = 32) -> portnn.Sequential:
    """8x8 -> 4x4 -> 2x2 (the code) -> 4x4 -> 8x8."""
    return portnn.Sequential(
        portnn.Conv2D(1, width, 3, stride=2, padding=1, activation="relu"),
        portnn.Conv2D(width, CODE_CHANNELS, 3, stride=2, padding=1),
        portnn.Conv2DTranspose(CODE_CHANNELS, width, 3, stride=2, padding="same",
                               activation="relu"),
        portnn.Conv2DTranspose(width, width, 3, stride=2, padding="same",
                               activation="relu"),
        portnn.Conv2D(width, 1, 3, padding="same", activation="sigmoid"))


def load(seed: int):
    """The digits as ``(N, 1, 8, 8)`` float32 images in [0, 1], split 80/20."""
    from sklearn.datasets import load_digits

    x = (load_digits().data / 16.0).astype(np.float32).reshape(-1, 1, 8, 8)
    order = np.random.default_rng(seed).permutation(len(x))
    cut = int(0.8 * len(x))
    return x[order[:cut]], x[order[cut:]]


def baselines(x_train, x_test, code: int) -> dict:
    """Held-out MSE of the mean image, and of PCA keeping `code` components."""
    a, b = x_train.reshape(len(x_train), -1), x_test.reshape(len(x_test), -1)
    mean = a.mean(axis=0)
    _, _, vt = np.linalg.svd(a - mean, full_matrices=False)
    basis = vt[:code]
    pca = (b - mean) @ basis.T @ basis + mean
    return {"mean_image_mse": float(np.mean((b - mean) ** 2)),
            "pca_mse": float(np.mean((b - pca) ** 2))}


def save_png(path, originals, reconstructions) -> bool:
    """Originals above reconstructions; False without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    n = len(originals)
    fig, axes = plt.subplots(2, n, figsize=(n * 0.9, 2.1))
    for i in range(n):
        for row, image in ((0, originals[i]), (1, reconstructions[i])):
            axes[row, i].imshow(image[0], cmap="gray_r", vmin=0, vmax=1)
            axes[row, i].axis("off")
    axes[0, 0].set_title("held-out originals", loc="left", fontsize=8)
    axes[1, 0].set_title("reconstructions from 16 numbers", loc="left", fontsize=8)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return True


def main(argv=None) -> dict:
    p = _common.parser(__doc__, epochs=60)
    p.add_argument("--width", type=int, default=32)
    p.add_argument("--png", default="conv_autoencoder.png",
                   help="where to save originals against reconstructions "
                        "('' for none)")
    args = p.parse_args(argv)
    backend = _common.set_backend(args.backend)
    portnn.seed(args.seed)
    x_train, x_test = load(args.seed)
    model = build(args.width)
    model.fit(x_train, x_train, loss="mse",
              optimizer=portnn.Adam(model.parameters(), lr=3e-3),
              epochs=args.epochs, batch_size=32, verbose=0 if args.quiet else 1)
    result = {"test_mse": model.evaluate(backend.asarray(x_test),
                                         backend.asarray(x_test), loss="mse")["loss"]}
    result.update(baselines(x_train, x_test, CODE_CHANNELS * 4))
    print(f"[{backend.name}] held-out reconstruction MSE: autoencoder "
          f"{result['test_mse']:.4f}, PCA with the same 16 numbers "
          f"{result['pca_mse']:.4f}, mean image {result['mean_image_mse']:.4f}")
    if args.png:
        shown = x_test[:12]
        rebuilt = backend.to_numpy(model.predict(backend.asarray(shown)))
        if save_png(args.png, shown, rebuilt):
            print(f"originals against reconstructions written to {args.png}")
    result["model"] = model
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
