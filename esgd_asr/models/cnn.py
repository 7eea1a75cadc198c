"""A small convolutional image classifier (conv 3x3 + ReLU + 2x2 max-pool blocks, then a hidden Linear layer).

No normalisation layers and no buffers, so the population engine batches it with `torch.func.vmap` over
`functional_call`, and OpenAI-ES (which refuses buffers) can perturb it.
"""
from dataclasses import dataclass, field

import torch
from torch import nn

from esgd_asr.errors import EsgdError


@dataclass
class CNNConfig:
    """Input images of `channels` x `image_size` x `image_size`; one conv block per entry of `conv` (its output
    channels), each halving the image side (down to at least 1); a hidden layer of `hidden` units."""

    channels: int = 1
    image_size: int = 8
    conv: list[int] = field(default_factory=lambda: [16, 32])
    hidden: int = 64
    num_classes: int = 10

    def __post_init__(self):
        if min([self.channels, self.image_size, self.hidden, self.num_classes, *self.conv]) < 1:
            raise EsgdError("cnn config: all sizes must be positive")


class SmallCNN(nn.Module):
    """(batch, channels, H, W) -> (batch, num_classes) logits."""

    def __init__(self, config: CNNConfig):
        super().__init__()
        self.config = config
        layers, width, side = [], config.channels, config.image_size
        for channels in config.conv:
            layers += [nn.Conv2d(width, channels, 3, padding=1), nn.ReLU()]
            if side >= 2:
                layers.append(nn.MaxPool2d(2))
                side //= 2
            width = channels
        self.features = nn.Sequential(*layers)
        self.hidden = nn.Linear(width * side * side, config.hidden)
        self.output = nn.Linear(config.hidden, config.num_classes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.output(torch.relu(self.hidden(self.features(images).flatten(1))))
