"""Per-generation history: history.tsv, history.jsonl, TensorBoard scalars and fitness.png in the run directory."""
import json
import math
import time
from pathlib import Path

TSV_COLUMNS = ["generation", "best", "mean", "elite_mean", "worst", "dead", "backed_off", "offspring_selected",
               "sigma", "anchor", "anchor_replaced", "member_frames", "sgd_frames", "eval_frames", "seconds",
               "best_optimizer"]
SCALARS = ["best", "mean", "elite_mean", "sigma", "anchor", "backed_off", "offspring_selected"]


def _cell(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, dict):
        return ",".join(f"{k}={_cell(v)}" for k, v in value.items())
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


class GenerationLog:
    """Rewrites the TSV, JSON lines and plot from the whole history (so a resumed run stays consistent).

    The plot costs about a second, so it is redrawn at most every `plot_every` seconds and once more on close."""

    def __init__(self, out_dir: str | Path, tensorboard: bool = True, plot: bool = True, first_generation: int = 0,
                 plot_every: float = 60.0):
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.plot = plot
        self.plot_every = plot_every
        self.plotted_at = None
        self.unplotted: list[dict] = []
        self.writer = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter
            self.writer = SummaryWriter(str(self.out_dir / "tensorboard"), purge_step=first_generation + 1)

    def write(self, history: list[dict]) -> None:
        """Write every file from `history`; TensorBoard gets the last record."""
        generations = [r for r in history if "generation" in r]
        with open(self.out_dir / "history.tsv", "w") as tsv:
            tsv.write("\t".join(TSV_COLUMNS) + "\n")
            for record in generations:
                tsv.write("\t".join(_cell(record.get(c)) for c in TSV_COLUMNS) + "\n")
        with open(self.out_dir / "history.jsonl", "w") as jsonl:
            for record in history:
                jsonl.write(json.dumps(record) + "\n")
        if self.writer is not None and generations:
            last = generations[-1]
            for key in SCALARS:
                value = last.get(key)
                if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
                    self.writer.add_scalar(f"esgd/{key}", value, last["generation"])
            self.writer.flush()
        if self.plot and generations:
            self.unplotted = generations
            if self.plotted_at is None or time.monotonic() - self.plotted_at >= self.plot_every:
                self.plot_fitness(generations)

    def plot_fitness(self, generations: list[dict]) -> None:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        x = [r["generation"] for r in generations]
        figure, axes = plt.subplots(figsize=(6, 4))
        for key in ("best", "elite_mean", "mean", "anchor"):
            if all(key in r for r in generations):
                axes.plot(x, [r[key] for r in generations], marker="o", label=key)
        axes.set_xlabel("generation")
        axes.set_ylabel("validation cross-entropy")
        axes.legend()
        axes.grid(alpha=0.3)
        figure.tight_layout()
        figure.savefig(self.out_dir / "fitness.png")
        plt.close(figure)
        self.plotted_at = time.monotonic()
        self.unplotted = []

    def close(self) -> None:
        if self.unplotted:
            self.plot_fitness(self.unplotted)
        if self.writer is not None:
            self.writer.close()
