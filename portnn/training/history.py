"""`History`: per-epoch figures returned by `fit`."""

from __future__ import annotations


class History:
    """What `fit` measured, one entry per epoch.

    Attributes
    ----------
    history : dict of str to list of float
        ``"loss"``, ``"accuracy"``, ``"val_loss"``, ... per epoch.
    epoch : list of int
        Epoch indices, from 0.

    Examples
    --------
    >>> h = History()
    >>> h.append(0, {"loss": 1.0})
    >>> h["loss"]
    [1.0]
    """

    def __init__(self) -> None:
        self.history: dict[str, list[float]] = {}
        self.epoch: list[int] = []

    def append(self, epoch: int, logs: dict[str, float]) -> None:
        """Record one epoch's figures."""
        self.epoch.append(epoch)
        for key, value in logs.items():
            self.history.setdefault(key, []).append(float(value))

    def __getitem__(self, key: str) -> list[float]:
        return self.history[key]

    def __contains__(self, key: str) -> bool:
        return key in self.history

    def plot(self, path=None, title: str | None = None):
        """Draw loss and metric curves (training and validation) with
        matplotlib, one panel per figure, and the learning rate where it
        changed; save to `path` if given.

        Returns
        -------
        matplotlib.figure.Figure
        """
        import matplotlib

        if path is not None:
            matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt

        rates = self.history.get("lr", [])
        names = [k for k in self.history if not k.startswith("val_") and (
            k != "lr" or len(set(rates)) > 1)]  # a constant rate is no curve
        fig, axes = plt.subplots(1, len(names), figsize=(5 * len(names), 3.5),
                                 squeeze=False)
        for ax, name in zip(axes[0], names, strict=True):
            if name == "lr":
                ax.plot(self.epoch, rates, label="learning rate")
                name = "learning rate"
            else:
                ax.plot(self.epoch, self.history[name], label=f"train {name}")
            if f"val_{name}" in self.history:
                ax.plot(self.epoch, self.history[f"val_{name}"], label=f"val {name}")
            ax.set_xlabel("epoch")
            ax.set_ylabel(name)
            ax.grid(alpha=0.3)
            ax.legend()
        if title:
            fig.suptitle(title)
        fig.tight_layout()
        if path is not None:
            fig.savefig(path, dpi=100)
            plt.close(fig)
        return fig

    def __repr__(self) -> str:
        last = {k: round(v[-1], 4) for k, v in self.history.items() if v}
        return f"History(epochs={len(self.epoch)}, last={last})"
