"""Segment circles, squares and triangles with a small U-Net.

Every image (24x24, one channel) holds two or three filled shapes of random
size, place and brightness, apart from each other, on a noisy background,
drawn here with NumPy;
the target gives each pixel its class: 0 background, 1 circle, 2 square,
3 triangle. A pixel's class depends on the shape around it, not on its own
brightness, so the network must see whole shapes (the contracting path)
and still answer at every pixel (the expanding path, with the skip
connections concatenating the fine features back in).

The U-Net is a graph model: two levels down (3x3 convolutions, max-pooling),
two up (transposed convolutions of stride 2), ``Concatenate`` for the
skips, and logits with the classes on axis 1, trained with per-pixel
``CrossEntropy(axis=1)``. Prints the mean intersection-over-union on
held-out images (the mean over the four classes of ``|pred & true| /
|pred | true|``) and saves a PNG of inputs, truths and predictions.

    python examples/unet_segmentation.py --backend numpy
"""

from __future__ import annotations

import sys

import _common
import numpy as np

import portnn

SIZE, CLASSES = 24, 4
NAMES = ("background", "circle", "square", "triangle")


def make_data(n: int, rs) -> tuple[np.ndarray, np.ndarray]:
    """``(n, 1, SIZE, SIZE)`` float32 images and ``(n, SIZE, SIZE)`` labels."""
    rows, cols = np.mgrid[0:SIZE, 0:SIZE]
    images = rs.normal(0.0, 0.1, (n, SIZE, SIZE))
    labels = np.zeros((n, SIZE, SIZE), np.int64)
    for i in range(n):
        wanted, tries = rs.integers(2, 4), 0
        while wanted and tries < 50:  # shapes apart: none hides another
            tries += 1
            kind = rs.integers(1, CLASSES)
            r = rs.integers(3, 7)  # half the shape's extent
            cy, cx = rs.integers(r, SIZE - r, size=2)
            dy, dx = rows - cy, cols - cx
            if kind == 1:
                inside = dy**2 + dx**2 <= r * r
            elif kind == 2:
                inside = (np.abs(dy) <= r - 1) & (np.abs(dx) <= r - 1)
            else:  # apex up, base at the bottom: |dx| grows as the rows go down
                inside = (dy <= r) & (2 * np.abs(dx) <= dy + r)
            near = (np.abs(dy) <= r + 1) & (np.abs(dx) <= r + 1)
            if np.any(labels[i][near]):
                continue
            images[i][inside] = rs.uniform(0.5, 1.0)
            labels[i][inside] = kind
            wanted -= 1
    return images[:, None].astype(np.float32), labels


def build(width: int = 16) -> portnn.Model:
    """A two-level U-Net returning ``(N, CLASSES, SIZE, SIZE)`` logits."""

    def block(x, channels):
        for _ in range(2):
            x = portnn.Conv2D(channels, kernel_size=3, padding="same",
                              activation="relu")(x)
        return x

    inp = portnn.Input((1, SIZE, SIZE))
    s1 = block(inp, width)                                   # 24x24
    s2 = block(portnn.MaxPool2D(2)(s1), 2 * width)           # 12x12
    deep = block(portnn.MaxPool2D(2)(s2), 4 * width)         # 6x6
    up2 = portnn.Conv2DTranspose(2 * width, kernel_size=2, stride=2)(deep)
    u2 = block(portnn.Concatenate(axis=1)([up2, s2]), 2 * width)
    up1 = portnn.Conv2DTranspose(width, kernel_size=2, stride=2)(u2)
    u1 = block(portnn.Concatenate(axis=1)([up1, s1]), width)
    return portnn.Model(inputs=inp, outputs=portnn.Conv2D(CLASSES, kernel_size=1)(u1))


def mean_iou(pred: np.ndarray, true: np.ndarray) -> tuple[float, list]:
    """The mean over classes of intersection over union, and each class's."""
    per = []
    for k in range(CLASSES):
        p, t = pred == k, true == k
        union = np.sum(p | t)
        per.append(float(np.sum(p & t) / union) if union else 1.0)
    return float(np.mean(per)), per


def save_png(path, images, truths, preds) -> bool:
    """Inputs, truths and predictions in three rows; False without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    n = len(images)
    fig, axes = plt.subplots(3, n, figsize=(n * 1.2, 3.9))
    for i in range(n):
        axes[0, i].imshow(images[i, 0], cmap="gray")
        axes[1, i].imshow(truths[i], cmap="viridis", vmin=0, vmax=CLASSES - 1)
        axes[2, i].imshow(preds[i], cmap="viridis", vmin=0, vmax=CLASSES - 1)
        for row in axes[:, i]:
            row.axis("off")
    for row, title in enumerate(("input", "truth", "U-Net")):
        axes[row, 0].set_title(title, loc="left", fontsize=8)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return True


def main(argv=None) -> dict:
    p = _common.parser(__doc__, epochs=12)
    p.add_argument("--samples", type=int, default=2000)
    p.add_argument("--width", type=int, default=16)
    p.add_argument("--png", default="unet_segmentation.png",
                   help="where to save inputs, truths and predictions ('' for none)")
    args = p.parse_args(argv)
    backend = _common.set_backend(args.backend)
    portnn.seed(args.seed)
    rs = np.random.default_rng(args.seed)
    x, y = make_data(args.samples, rs)
    x_test, y_test = make_data(300, rs)
    model = build(args.width)
    model.fit(x, y, loss=portnn.CrossEntropy(axis=1),
              optimizer=portnn.Adam(model.parameters(), lr=3e-3),
              epochs=args.epochs, batch_size=32, verbose=0 if args.quiet else 1)
    logits = model.predict(backend.asarray(x_test))
    pred = np.argmax(backend.to_numpy(logits), axis=1)
    iou, per_class = mean_iou(pred, y_test)
    detail = ", ".join(f"{n} {v:.3f}" for n, v in zip(NAMES, per_class, strict=True))
    print(f"[{backend.name}] held-out mean IoU {iou:.3f} ({detail})")
    if args.png and save_png(args.png, x_test[:8], y_test[:8], pred[:8]):
        print(f"inputs, truths and predictions written to {args.png}")
    return {"mean_iou": iou, "per_class_iou": per_class, "model": model}


if __name__ == "__main__":
    sys.exit(0 if main(sys.argv[1:])["mean_iou"] >= 0.9 else 1)
