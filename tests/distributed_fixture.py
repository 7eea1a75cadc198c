"""A tiny ESGD run for the distributed tests, and (as a script) one rank of it started by the launcher:
`python distributed_fixture.py OUT_DIR [KILL_RANK]` runs or resumes the run in OUT_DIR; rank KILL_RANK kills itself
with SIGKILL in the evolution step of generation 2, after generation 1's checkpoint."""
import os
import signal
import sys

import torch

from esgd_asr.errors import cli_main
from esgd_asr.models import DNNConfig, FeedForwardDNN
from esgd_asr.population.config import ESGDConfig
from esgd_asr.population.optim_pool import OptimizerPool
from esgd_asr.population.data import gaussian_clusters
from esgd_asr.population.newbob import NewBobConfig

MODEL = DNNConfig(feat_dim=4, splice=3, hidden=[16, 16], activations=["relu", "sigmoid"], num_targets=5)


def factory():
    return FeedForwardDNN(MODEL)


def data():
    features, targets = gaussian_clusters(500, MODEL.input_dim, MODEL.num_targets, torch.Generator().manual_seed(0),
                                          spread=2.5)
    return (features[:350], targets[:350]), (features[350:], targets[350:])


def settings() -> ESGDConfig:
    """mu 5 and lambda 7: blocks of unequal size on 2 processes; offspring trained before selection; a fine-tune."""
    pool = OptimizerPool(lr_ranges={"sgd": [0.01, 0.2], "adam": [1e-3, 2e-2]}, batch_sizes=[32, 64])
    return ESGDConfig(mu=5, offspring=7, rho=2, generations=2, offspring_sgd_epochs=1, pool=pool, seed=3,
                      finetune=NewBobConfig(lr=0.01, batch_size=64, max_epochs=1))


def run_rank(out_dir: str, kill: int | None) -> None:
    from esgd_asr.population.distributed import ShardedESGD
    from esgd_asr.population.driver import run_algorithm
    from esgd_asr.population.ranks import Ranks

    torch.set_num_threads(1)
    ranks = Ranks.from_environment("cpu")
    algorithm = ShardedESGD(settings(), factory, *data(), "cpu", ranks)
    if kill == ranks.rank:
        evolve = algorithm.evolution_step

        def killed_in_generation_two(k):
            if algorithm.generation == 1:
                os.kill(os.getpid(), signal.SIGKILL)
            return evolve(k)

        algorithm.evolution_step = killed_in_generation_two
    run_algorithm(algorithm, out_dir, resume=True, progress=False, tensorboard=False, plot=False)


@cli_main
def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    run_rank(argv[0], int(argv[1]) if len(argv) > 1 else None)


if __name__ == "__main__":
    main()
