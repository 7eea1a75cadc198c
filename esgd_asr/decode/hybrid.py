"""Hybrid acoustic scores: a network's senone log-posteriors minus the log senone priors (pseudo log-likelihoods,
log p(x|s) + const = log p(s|x) - log p(s)), for all frames of a set of utterances in batched forward passes.

Priors are the senones' relative frequencies in the training alignments (pdf counts). A senone never seen in
training gets a log-prior of +1e10, so its score is about -1e10 and no path uses it (Kaldi's nnet1 blocks such
pdfs the same way).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from esgd_asr.errors import EsgdError
from esgd_asr.hybrid.frames import FrameSet
from esgd_asr.hybrid.model_file import HybridModel
from esgd_asr.hybrid.prepare import NnetInput
from esgd_asr.models.kaldi_nnet3 import Nnet3Network

BLOCKED_LOG_PRIOR = 1.0e10
HYBRID_ACWT = 0.2  # acoustic scale of the hybrids' pseudo log-likelihoods (steps/decode_nnet.sh's default too)
FRAMES_PER_CHUNK = 50  # output frames per pass of an imported nnet3 network (Kaldi's --frames-per-chunk)


def log_priors(counts) -> torch.Tensor:
    """(senones,) float32 log relative frequencies; unseen senones get BLOCKED_LOG_PRIOR."""
    counts = torch.as_tensor(np.asarray(counts, dtype=np.float64))
    if counts.ndim != 1 or counts.sum() <= 0 or (counts < 0).any():
        raise EsgdError("pdf counts must be a non-empty vector of non-negative counts with a positive sum")
    logs = torch.log(counts / counts.sum())
    return torch.where(counts > 0, logs, torch.full_like(logs, BLOCKED_LOG_PRIOR)).float()


class HybridScorer:
    """Pseudo log-likelihoods (frames, senones) of a hybrid model for FrameSets made with its NnetInput;
    `batch_size` frames per forward pass."""

    def __init__(self, model: HybridModel, counts, batch_size: int = 4096, device: str = "cpu"):
        if model.nnet_input is None:
            raise EsgdError(f"{model.source}: the model carries no nnet input description (front end, context, "
                            f"normalisation); export it with esgd_asr.hybrid.model_file.export_torchscript")
        self.nnet_input = NnetInput.from_dict(model.nnet_input, str(model.source))
        self.module = model.module.to(device).eval()
        self.log_priors = log_priors(counts)
        self.batch_size, self.device = batch_size, device
        frame_dim = self.nnet_input.frame_dim
        if frame_dim is None:
            raise EsgdError(f"{model.source}: the nnet input has no normalisation statistics")
        model.check(self.nnet_input.input_dim(frame_dim), len(self.log_priors), self.nnet_input.chunk,
                    self.nnet_input.kind)

    @torch.no_grad()
    def log_posteriors(self, frames: FrameSet) -> torch.Tensor:
        """(frames, senones) float32 log-softmax of the network's outputs, the forward pass batched over frames
        (DNN) or chunks (BiLSTM; padding positions dropped); an imported nnet3 network over chunks of consecutive
        frames (`_whole_utterances`: each layer computed once per frame)."""
        if isinstance(self.module, Nnet3Network):
            return self._whole_utterances(frames)
        inputs, index = self.nnet_input.utterance_inputs(frames)
        out = torch.empty(frames.num_frames, len(self.log_priors))
        step = max(1, self.batch_size // (inputs.shape[1] if inputs.ndim == 3 else 1))  # rows of ~batch_size frames
        for start in range(0, inputs.shape[0], step):
            batch = inputs[start:start + step].to(self.device)
            scores = F.log_softmax(self.module(batch).float(), dim=-1).cpu()
            rows = index[start:start + step].reshape(-1)
            scores = scores.reshape(-1, scores.shape[-1])
            keep = rows >= 0
            out[rows[keep]] = scores[keep]
        return out

    def _whole_utterances(self, frames: FrameSet) -> torch.Tensor:
        """Chunks of FRAMES_PER_CHUNK frames of each utterance in one pass each, the utterance's edge frames repeated
        over the context; an i-vector input is read at the chunk's middle frame (as Kaldi's decodable does)."""
        left, right = self.module.left_context, self.module.right_context
        feat_dim = self.module.input_dims[0]
        out = torch.empty(frames.num_frames, len(self.log_priors))
        for u in range(len(frames.utterances)):
            x = frames.features[frames.offsets[u]:frames.offsets[u + 1]]
            padded = torch.cat([x[:1].expand(left, -1), x, x[-1:].expand(right, -1)])
            for start in range(0, len(x), FRAMES_PER_CHUNK):
                end = min(start + FRAMES_PER_CHUNK, len(x))
                window = padded[start:end + left + right].clone()
                window[left, feat_dim:] = x[(start + end) // 2, feat_dim:]  # ReplaceIndex(ivector, t, 0)
                scores = self.module(window[None].to(self.device))[0].float()
                out[frames.offsets[u] + start:frames.offsets[u] + end] = F.log_softmax(scores, -1).cpu()
        return out

    def pseudo_loglikes(self, frames: FrameSet) -> torch.Tensor:
        """(frames, senones) log p(s|x) - log p(s)."""
        return self.log_posteriors(frames) - self.log_priors
