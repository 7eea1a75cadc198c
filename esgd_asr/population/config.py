"""ESGD-family settings from conf/esgd.yaml: a `default` section, named presets, dotted overrides."""
from dataclasses import dataclass, field
from pathlib import Path

from esgd_asr.errors import EsgdError
from esgd_asr.population.newbob import NewBobConfig
from esgd_asr.population.optim_pool import OptimizerPool
from esgd_asr.population.precision import PRECISIONS
from esgd_asr.yaml_config import dataclass_from_dict, read_yaml, resolve


@dataclass
class ESGDConfig:
    """Settings of ESGD (NeurIPS 2018, Algorithm 1), ESGD with anchors (Interspeech 2019) and the baselines. The
    defaults are conf/esgd.yaml's `default`, the recipe's 2-core scale; the papers' scale is its `paper_scale`
    (mu 100, lambda 400, K 15, Kf 5, whole epochs), merged into the presets bn50, swb300 and their anchored kin."""

    mu: int = 4                        # parent population (with anchors: including the anchor)
    offspring: int = 8                 # lambda
    rho: int = 2                       # parents per offspring
    sgd_epochs: int = 1                # Ks
    evolution_steps: int = 1           # Kv (evolution steps per generation, Algorithm 1)
    offspring_sgd_epochs: int = 0      # SGD epochs given to each offspring before selection (0 or 1)
    elite_fraction: float = 0.6        # m = round(elite_fraction * mu)
    sigma0: float = 0.01
    sigma_schedule: str = "inverse"    # inverse: sigma_k = sigma0 / k; constant: sigma_k = sigma0
    backoff_prob: float = 1.0          # probability of backing off a member whose fitness got worse
    generations: int = 2               # K (with anchors: generations per round)
    rounds: int = 1                    # anchors: iterated rounds, the best of a round is the next anchor
    finetune_each_round: bool = False  # anchors: fine-tune at the end of every round, the best anchors the next
    anchor_prob: float = 0.25          # anchors: p_a, probability that the anchor is a parent of an offspring
    seed: int = 0
    epoch_frames: int | None = 131072  # frames of one SGD epoch, each member's own draw per epoch (None: all)
    fitness_frames: int | None = None  # validation frames of the fitness, one fixed draw per run (None: all)
    fitness_chunk: int = 4096          # validation samples per batched fitness pass (frames; BiLSTM: chunks)
    fitness_members: int = 64          # members per batched fitness pass (bounds logits memory on the GPU)
    precision: str = "bf16"            # GPU passes: bf16 (fp32 master weights), tf32 or fp32; the CPU is always fp32
    pool: OptimizerPool = field(default_factory=OptimizerPool)
    finetune: NewBobConfig = field(default_factory=lambda: NewBobConfig(lr=0.1, max_epochs=1, min_lr=1e-6))  # Kf

    def __post_init__(self):
        checks = [(self.mu >= 2, "mu must be at least 2"), (self.offspring >= 1, "offspring must be at least 1"),
                  (self.rho >= 1, "rho must be at least 1"), (self.sgd_epochs >= 0, "sgd_epochs must be >= 0"),
                  (self.evolution_steps >= 0, "evolution_steps must be >= 0"),
                  (self.offspring_sgd_epochs >= 0, "offspring_sgd_epochs must be >= 0"),
                  (0 < self.elite_fraction <= 1, "elite_fraction must be in (0, 1]"),
                  (self.sigma0 >= 0, "sigma0 must be >= 0"),
                  (self.sigma_schedule in ("inverse", "constant"), "sigma_schedule must be inverse or constant"),
                  (0 <= self.backoff_prob <= 1, "backoff_prob must be in [0, 1]"),
                  (self.generations >= 1, "generations must be at least 1"), (self.rounds >= 1, "rounds must be >= 1"),
                  (0 <= self.anchor_prob <= 1, "anchor_prob must be in [0, 1]"),
                  (self.epoch_frames is None or self.epoch_frames >= 1, "epoch_frames must be positive or null"),
                  (self.fitness_frames is None or self.fitness_frames >= 1, "fitness_frames must be positive or null"),
                  (self.fitness_chunk >= 1, "fitness_chunk must be at least 1"),
                  (self.fitness_members >= 1, "fitness_members must be at least 1"),
                  (self.precision in PRECISIONS, f"precision must be one of {', '.join(PRECISIONS)}"),
                  (self.finetune.epoch_frames is None,
                   "finetune.epoch_frames: the fine-tune's epochs are those of the SGD step (set epoch_frames)")]
        for ok, message in checks:
            if not ok:
                raise EsgdError(f"esgd config: {message}")

    def sigma(self, generation: int) -> float:
        """Mutation strength of generation k >= 1 (k counted within a round)."""
        return self.sigma0 / generation if self.sigma_schedule == "inverse" else self.sigma0

    def elite(self, selectable: int) -> int:
        """m of the m-elitist selection, at most the number of selectable slots."""
        return max(1, min(round(self.elite_fraction * self.mu), selectable))


def load_esgd_config(path: str | Path, preset: str = "default", overrides: dict | None = None) -> ESGDConfig:
    """Read conf/esgd.yaml: `default`, then `presets.<preset>` merged over it (several, comma-separated, merge in
    order: "anchors,blstm_batches"), then dotted overrides such as {"mu": 10, "pool.lr_decay": 0.8}."""
    document = read_yaml(path, "esgd config")
    if not isinstance(document.get("default"), dict):
        raise EsgdError(f"{path}: an esgd config needs a 'default' mapping")
    values = resolve(document["default"], document.get("presets"), preset, overrides, str(path))
    return dataclass_from_dict(ESGDConfig, values, str(path))
