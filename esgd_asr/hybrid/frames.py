"""Frame-level training data of the hybrid models: a data dir's features (through a front-end transform, with
optional online i-vectors) and per-frame senone targets, held as one frame matrix with utterance boundaries.

The DNN reads frames spliced with context on the fly (`spliced`, `frame_batches`); the BiLSTM reads fixed-length
chunks of consecutive frames (`chunks`). Targets of -100 mark frames the loss ignores (padding).
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from esgd_asr.data.kaldi_dir import read_table
from esgd_asr.errors import EsgdError
from esgd_asr.features.feature_io import ScpReader

log = logging.getLogger(__name__)
IGNORE = -100
# A front end: (utterance id, speaker id, raw features (T, D)) -> transformed features (T, D').
FrontEnd = Callable[[str, str, torch.Tensor], torch.Tensor]


@dataclass
class FrameSet:
    """All frames of a set: features (N, D), targets (N,), and utterance u's frames at offsets[u]:offsets[u+1]."""

    features: torch.Tensor
    targets: torch.Tensor
    offsets: torch.Tensor
    utterances: list[str]

    @property
    def num_frames(self) -> int:
        return self.features.shape[0]

    @property
    def dim(self) -> int:
        return self.features.shape[1]

    def frame_bounds(self) -> tuple[torch.Tensor, torch.Tensor]:
        """For every frame, the first and last frame index of its utterance."""
        lengths = self.offsets[1:] - self.offsets[:-1]
        return (torch.repeat_interleave(self.offsets[:-1], lengths),
                torch.repeat_interleave(self.offsets[1:] - 1, lengths))


def load_frame_set(data_dir: str | Path, front_end: FrontEnd, targets: Mapping[str, np.ndarray] | None = None,
                   ivector_scp: str | Path | None = None, ivector_period: int = 10,
                   utterances: Iterable[str] | None = None) -> FrameSet:
    """Read every utterance of `data_dir/feats.scp` (or only `utterances`) through `front_end`; append its online
    i-vectors (the one in force at each frame) when `ivector_scp` is given. With `targets`, utterances without
    targets are skipped (counted in the log), and a target sequence whose length differs from the frames is an
    error."""
    data_dir = Path(data_dir)
    feats = ScpReader(data_dir / "feats.scp")
    utt2spk = read_table(data_dir / "utt2spk")
    ivectors = ScpReader(ivector_scp) if ivector_scp is not None else None
    matrices, labels, kept, skipped = [], [], [], 0
    wanted = sorted(feats.table) if utterances is None else sorted(utterances)
    for utt in wanted:
        if utt not in feats:
            raise EsgdError(f"{data_dir / 'feats.scp'}: no features for utterance '{utt}'")
        if targets is not None and utt not in targets:
            skipped += 1
            continue
        x = front_end(utt, utt2spk[utt], torch.as_tensor(feats[utt], dtype=torch.float32))
        if ivectors is not None:
            x = torch.cat([x, _ivectors_per_frame(ivectors, utt, len(x), ivector_period)], dim=1)
        if targets is not None:
            y = torch.as_tensor(np.asarray(targets[utt]), dtype=torch.long)
            if len(y) != len(x):
                raise EsgdError(f"utterance '{utt}': {len(y)} targets for {len(x)} frames of {data_dir / 'feats.scp'}")
        else:
            y = torch.full((len(x),), IGNORE, dtype=torch.long)
        matrices.append(x)
        labels.append(y)
        kept.append(utt)
    if not kept:
        raise EsgdError(f"{data_dir}: no utterance has both features and targets")
    if skipped:
        log.warning("%s: %d of %d utterances have no targets (not aligned) and are skipped", data_dir, skipped,
                    skipped + len(kept))
    lengths = torch.tensor([len(x) for x in matrices])
    offsets = torch.cat([torch.zeros(1, dtype=torch.long), lengths.cumsum(0)])
    return FrameSet(torch.cat(matrices), torch.cat(labels), offsets, kept)


def _ivectors_per_frame(ivectors: ScpReader, utt: str, num_frames: int, period: int) -> torch.Tensor:
    """Row t of an online i-vector matrix covers frames [t * period, (t + 1) * period)."""
    matrix = torch.as_tensor(ivectors[utt], dtype=torch.float32)
    rows = torch.arange(num_frames) // period
    if int(rows[-1]) >= len(matrix):
        raise EsgdError(f"utterance '{utt}': {len(matrix)} i-vectors do not cover {num_frames} frames "
                        f"at one per {period} frames")
    return matrix[rows]


def spliced(frames: FrameSet, indices: torch.Tensor, left: int, right: int,
            bounds: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
    """Frames `indices` with `left`/`right` context frames concatenated (edge frames of each utterance repeated,
    as Kaldi's splice-feats): (len(indices), (left + 1 + right) * dim)."""
    first, last = bounds if bounds is not None else frames.frame_bounds()
    offsets = torch.arange(-left, right + 1)
    context = (indices[:, None] + offsets[None, :]).clamp(min=first[indices, None], max=last[indices, None])
    return frames.features[context].reshape(len(indices), -1)


def frame_batches(frames: FrameSet, batch_size: int, left: int, right: int, generator: torch.Generator
                  ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """One shuffled epoch of (spliced features, targets) mini-batches over the frames that have targets."""
    usable = torch.nonzero(frames.targets != IGNORE).squeeze(1)
    order = usable[torch.randperm(len(usable), generator=generator)]
    bounds = frames.frame_bounds()
    for start in range(0, len(order), batch_size):
        index = order[start:start + batch_size]
        yield spliced(frames, index, left, right, bounds), frames.targets[index]


def all_spliced(frames: FrameSet, left: int, right: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Every frame with targets, spliced: the (features, targets) tensors the population engine trains on."""
    usable = torch.nonzero(frames.targets != IGNORE).squeeze(1)
    return spliced(frames, usable, left, right), frames.targets[usable]


def chunks(frames: FrameSet, length: int, left: int = 0, right: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Consecutive non-overlapping chunks of `length` frames per utterance (the BiLSTM's unrolled window), each
    with up to `left` / `right` frames of the utterance around it as context whose targets are IGNORE (Kaldi's
    chunk-left-context / chunk-right-context); windows are padded at the end with zeros and IGNORE targets to
    left + length + right frames: (C, left + length + right, dim), (C, left + length + right)."""
    width = left + length + right
    pieces_x, pieces_y = [], []
    for u in range(len(frames.utterances)):
        start, end = int(frames.offsets[u]), int(frames.offsets[u + 1])
        for s in range(start, end, length):
            first, last = max(start, s - left), min(end, s + length + right)
            x = frames.features[first:last]
            y = torch.full((last - first,), IGNORE, dtype=frames.targets.dtype)
            y[s - first:min(s + length, end) - first] = frames.targets[s:min(s + length, end)]
            pad = width - len(x)
            pieces_x.append(torch.nn.functional.pad(x, (0, 0, 0, pad)))
            pieces_y.append(torch.nn.functional.pad(y, (0, pad), value=IGNORE))
    return torch.stack(pieces_x), torch.stack(pieces_y)
