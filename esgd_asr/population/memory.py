"""Will a population fit on its GPU? An estimate made before training starts, so that a population that cannot
fit stops at once with the sizes named, rather than after minutes with an out-of-memory error deep in a pass.

The estimate counts fp32 member copies at the peak of an ESGD generation (the population, its optimizer state
(two buffers a member), the back-off snapshot of both, and during the evolution step the offspring, parents +
offspring concatenated and the selected members), the bf16 copies of the weights a pass makes, and the largest
activations of a training step (every member's mini-batch) and of a fitness pass (fitness_members members on
fitness_chunk samples); for the BiLSTM, whose training passes are CUDA graphs, both. It is an estimate: a
population that passes may still run out of memory near the limit.
"""
import torch
from torch import nn

from esgd_asr.errors import EsgdError

GIB = 2 ** 30


def _bytes_per_member_sample(config, training: bool) -> int:
    """Activation bytes of one member on one sample (a frame, or a chunk of frames for the BiLSTM)."""
    from esgd_asr.models.blstm import BLSTMConfig
    from esgd_asr.models.dnn import DNNConfig

    if isinstance(config, DNNConfig):
        kept = sum(config.hidden) * (12 if training else 4)       # outputs, their gradients, bf16 casts
        return kept + config.num_targets * (14 if training else 8)  # logits, fp32 log-probs (and gradient)
    if isinstance(config, BLSTMConfig):
        frames = config.chunk + config.chunk_left_context + config.chunk_right_context
        lstm = config.num_layers * 2 * config.cells * (56 if training else 16)   # gates, states, reserve space
        return frames * (lstm + config.bottleneck * 8 + config.num_targets * (14 if training else 8))
    return 0


def generation_estimate(module: nn.Module, mu: int, offspring: int, max_batch: int, fitness_members: int,
                        fitness_chunk: int, extra_copies: int = 0) -> dict[str, float]:
    """GiB of the weights and optimizer state, and of the largest training / fitness activations; `extra_copies`:
    member copies the evolution step holds beyond ESGD's own (a distributed rank's parents and survivors fetched
    from other ranks)."""
    from esgd_asr.models.blstm import BiLSTM

    member = sum(p.numel() for p in module.parameters()) * 4
    copies = max(7 * mu, 5 * mu + 2 * offspring + extra_copies)   # the SGD step's peak, the evolution step's peak
    config = getattr(module, "config", None)
    train = mu * max_batch * _bytes_per_member_sample(config, True) + mu * member // 2
    fitness = fitness_members * fitness_chunk * _bytes_per_member_sample(config, False) + fitness_members * member // 2
    activations = max(train, fitness)
    if isinstance(module, BiLSTM):
        # the training passes are CUDA graphs (graphed.py) that keep their activations, a copy of their members'
        # weights and their gradients between steps, so the fitness passes come on top of them
        activations = train + 2 * mu * member + fitness
    return {"member_gib": member / GIB, "copies": copies, "weights_gib": copies * member / GIB,
            "activations_gib": activations / GIB}


def check_fits(module: nn.Module, mu: int, offspring: int, max_batch: int, fitness_members: int, fitness_chunk: int,
               device: torch.device, extra_copies: int = 0) -> None:
    """Raise EsgdError (one line, naming the sizes) when the estimate exceeds the device's free memory."""
    if device.type != "cuda":
        return
    estimate = generation_estimate(module, mu, offspring, max_batch, fitness_members, fitness_chunk, extra_copies)
    free, total = torch.cuda.mem_get_info(device)
    free += torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
    needed = estimate["weights_gib"] + estimate["activations_gib"]
    if needed > free / GIB:
        raise EsgdError(
            f"population does not fit on {device} ({torch.cuda.get_device_name(device)}): about {needed:.1f} GiB "
            f"needed ({estimate['copies']} member copies of {estimate['member_gib'] * 1024:.0f} MiB for mu={mu}, "
            f"lambda={offspring} with optimizer state and back-off = {estimate['weights_gib']:.1f} GiB, activations "
            f"{estimate['activations_gib']:.1f} GiB at batch {max_batch} and fitness {fitness_members} members x "
            f"{fitness_chunk}) but {free / GIB:.1f} of {total / GIB:.1f} GiB free; lower mu, offspring, the batch "
            f"sizes or fitness_members")
