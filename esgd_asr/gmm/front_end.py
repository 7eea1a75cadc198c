"""The feature front ends a GMM-HMM model carries, and a data dir's features through them.

A model's front end turns a data dir's feats.scp (+ cmvn.scp) into its input, so alignment and decoding reproduce
the features it was trained on:
- `FrontEnd` (esgd_asr.features.feature_source): per-speaker CMVN, then deltas (mono, tri1);
- `LdaFrontEnd`: per-speaker CMVN, splicing +-context frames, then final.mat (LDA, or LDA+MLLT) (tri2, tri3).
Speaker adaptation (fMLLR, SAT) is not part of the model: `ModelFeatures` applies per-speaker transforms (a
trans.scp / ark keyed by speaker) on top of the model's front end, as Kaldi's transform-feats --utt2spk does.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from esgd_asr.errors import EsgdError
from esgd_asr.features.affine_io import TransformTable, apply_affine, as_matrix
from esgd_asr.features.feature_source import FeatureSource, FrontEnd
from esgd_asr.features.fmllr import SpeakerAdaptedLda
from esgd_asr.features.transforms import splice


@dataclass(eq=False)
class LdaFrontEnd:
    """Per-speaker CMVN (cmvn.scp), splice-feats --left-context / --right-context, then final.mat (dim, D*W + 1)."""

    matrix: np.ndarray  # final.mat, float64, offset column last
    left_context: int = 4
    right_context: int = 4
    cmvn: bool = True
    norm_vars: bool = False

    def __post_init__(self):
        self.matrix = as_matrix(self.matrix, "final.mat").numpy()
        self._lda = SpeakerAdaptedLda(self.matrix, None, self.left_context, self.right_context)

    @property
    def dim(self) -> int:
        return self.matrix.shape[0]

    def with_matrix(self, matrix) -> "LdaFrontEnd":
        return LdaFrontEnd(matrix, self.left_context, self.right_context, self.cmvn, self.norm_vars)

    def cmvn_only(self) -> FrontEnd:
        """The front end up to (not including) splicing."""
        return FrontEnd(cmvn=self.cmvn, norm_vars=self.norm_vars, delta_order=0)

    def spliced(self, x: torch.Tensor) -> torch.Tensor:
        """CMVN'd frames spliced: the input of final.mat (and of LDA / MLLT estimation)."""
        return splice(x, self.left_context, self.right_context)

    def apply(self, feats, cmvn_stats, where: str) -> torch.Tensor:
        x = self.cmvn_only().apply(feats, cmvn_stats, where)
        return self._lda.with_fmllr(None, where)(x).float()


def front_end_state(front_end) -> dict:
    """The dict a model file stores for its front end."""
    if isinstance(front_end, LdaFrontEnd):
        return {"kind": "lda", "matrix": front_end.matrix, "left_context": front_end.left_context,
                "right_context": front_end.right_context, "cmvn": front_end.cmvn, "norm_vars": front_end.norm_vars}
    return {"kind": "deltas", **dataclasses.asdict(front_end)}


def front_end_from_state(state: dict):
    state = dict(state)
    kind = state.pop("kind", "deltas")
    if kind == "lda":
        return LdaFrontEnd(**state)
    if kind == "deltas":
        return FrontEnd(**state)
    raise EsgdError(f"unknown feature front end '{kind}' in the model file")


class ModelFeatures(FeatureSource):
    """A data dir's utterances through a model's front end, then (optionally) the utterance's speaker's affine
    transform from `transforms` (fMLLR: a trans.scp / ark / dict keyed by speaker, else by utterance)."""

    def __init__(self, data_dir: str | Path, front_end, transforms=None):
        super().__init__(data_dir, front_end)
        self.transforms = None if transforms is None else (
            transforms if isinstance(transforms, TransformTable) else TransformTable(transforms))

    def transform_of(self, utt: str) -> np.ndarray | None:
        if self.transforms is None:
            return None
        spk = self.utt2spk[utt]
        if spk in self.transforms:
            return self.transforms[spk]
        if utt in self.transforms:
            return self.transforms[utt]
        raise EsgdError(f"{self.transforms.where}: no transform for speaker '{spk}' (utterance '{utt}')")

    def load(self, utt: str) -> torch.Tensor:
        x = super().load(utt)
        trans = self.transform_of(utt)
        if trans is None:
            return x
        return apply_affine(x, trans, f"{self.feats.scp}: utterance '{utt}': speaker transform").float()

    def load_unadapted(self, utt: str) -> torch.Tensor:
        return super().load(utt)
