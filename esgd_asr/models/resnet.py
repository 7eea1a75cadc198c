"""ResNet-20 for small images (He et al. 2016, section 4.2): a 3x3 conv, three stages of `blocks` basic blocks with
`width`, 2 `width`, 4 `width` channels (the second and third start with stride 2), global average pooling and a
linear classifier; 6 * blocks + 2 layers (blocks = 3: ResNet-20, 0.27 M parameters at width 16).

Shortcuts are the paper's option A (identity; stride-2 subsampling and zero-padded channels where the shape
changes), so they carry no parameters. Normalisation is GroupNorm (groups of 4 channels) rather than BatchNorm:
a member's output for an image then depends on that image alone (not on the batch it is evaluated in) and the model
has no running-statistics buffers, so the population engine vmaps it and OpenAI-ES can perturb it.
"""
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from esgd_asr.errors import EsgdError

CHANNELS_PER_GROUP = 4


@dataclass
class ResNetConfig:
    channels: int = 3
    image_size: int = 32
    width: int = 16
    blocks: int = 3
    num_classes: int = 10

    def __post_init__(self):
        if min(self.channels, self.image_size, self.blocks, self.num_classes) < 1:
            raise EsgdError("resnet config: all sizes must be positive")
        if self.width < CHANNELS_PER_GROUP or self.width % CHANNELS_PER_GROUP:
            raise EsgdError(f"resnet config: width must be a positive multiple of {CHANNELS_PER_GROUP}")


def _norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(channels // CHANNELS_PER_GROUP, channels)


class BasicBlock(nn.Module):
    """conv-norm-ReLU-conv-norm plus the (option A) shortcut, then ReLU."""

    def __init__(self, in_channels: int, channels: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, channels, 3, stride=stride, padding=1, bias=False)
        self.norm1 = _norm(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.norm2 = _norm(channels)
        self.stride = stride
        self.pad = channels - in_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.norm2(self.conv2(torch.relu(self.norm1(self.conv1(x)))))
        shortcut = x[:, :, ::self.stride, ::self.stride] if self.stride > 1 else x
        if self.pad:
            shortcut = F.pad(shortcut, (0, 0, 0, 0, self.pad // 2, self.pad - self.pad // 2))
        return torch.relu(out + shortcut)


class ResNet(nn.Module):
    """(batch, channels, H, W) -> (batch, num_classes) logits."""

    def __init__(self, config: ResNetConfig):
        super().__init__()
        self.config = config
        self.stem = nn.Conv2d(config.channels, config.width, 3, padding=1, bias=False)
        self.stem_norm = _norm(config.width)
        blocks, width = [], config.width
        for stage in range(3):
            channels = config.width * 2 ** stage
            for index in range(config.blocks):
                blocks.append(BasicBlock(width, channels, 2 if stage > 0 and index == 0 else 1))
                width = channels
        self.blocks = nn.Sequential(*blocks)
        self.output = nn.Linear(width, config.num_classes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        hidden = self.blocks(torch.relu(self.stem_norm(self.stem(images))))
        return self.output(hidden.mean(dim=(2, 3)))
