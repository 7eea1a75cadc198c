"""Per-epoch log of a single-model run: history.tsv, TensorBoard scalars and training.png in the run directory."""
import math
from pathlib import Path

TSV_COLUMNS = ["epoch", "valid_ce", "valid_acc", "lr", "backed_off", "tried_ce", "seconds", "frames_per_second"]
SCALARS = ["valid_ce", "valid_acc", "lr", "frames_per_second"]


def _cell(value) -> str:
    if value is None:
        return "-"
    return f"{value:.6g}" if isinstance(value, float) else str(value)


class EpochLog:
    """Rewrites the TSV and the plot from the whole history (so a resumed run stays consistent)."""

    def __init__(self, out_dir: str | Path, tensorboard: bool = True, plot: bool = True, first_epoch: int = 0):
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.plot = plot
        self.writer = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter
            self.writer = SummaryWriter(str(self.out_dir / "tensorboard"), purge_step=first_epoch + 1)

    def write(self, history: list[dict]) -> None:
        """Write history.tsv and training.png from `history`; TensorBoard gets the last record."""
        with open(self.out_dir / "history.tsv", "w") as tsv:
            tsv.write("\t".join(TSV_COLUMNS) + "\n")
            for record in history:
                tsv.write("\t".join(_cell(record.get(c)) for c in TSV_COLUMNS) + "\n")
        if self.writer is not None and history:
            last = history[-1]
            for key in SCALARS:
                value = last.get(key)
                if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
                    self.writer.add_scalar(f"nnet/{key}", value, last["epoch"])
            self.writer.flush()
        if self.plot and history:
            self.plot_curves(history)

    def plot_curves(self, history: list[dict]) -> None:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        x = [r["epoch"] for r in history]
        figure, (ce_axes, acc_axes) = plt.subplots(1, 2, figsize=(9, 3.5))
        ce_axes.plot(x, [r["valid_ce"] for r in history], marker="o", label="kept")
        tried = [(r["epoch"], r["tried_ce"]) for r in history if r.get("backed_off")]
        if tried:
            ce_axes.plot(*zip(*tried), "x", color="red", label="backed off")
        ce_axes.set_ylabel("validation cross-entropy")
        acc_axes.plot(x, [100 * r["valid_acc"] for r in history], marker="o")
        acc_axes.set_ylabel("validation frame accuracy (%)")
        for axes in (ce_axes, acc_axes):
            axes.set_xlabel("epoch")
            axes.grid(alpha=0.3)
        ce_axes.legend()
        figure.tight_layout()
        figure.savefig(self.out_dir / "training.png")
        plt.close(figure)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
