"""A data dir's features as the models read them: per-speaker CMVN and deltas (`FrontEnd`) over feats.scp, with
the utterances of one job's share of the speakers (`FeatureSource.shard`)."""
from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import torch

from esgd_asr.data.kaldi_dir import read_table, split_share
from esgd_asr.errors import EsgdError
from esgd_asr.features.cmvn import apply_cmvn
from esgd_asr.features.feature_io import ScpReader
from esgd_asr.features.transforms import add_deltas


@dataclass(frozen=True)
class FrontEnd:
    """Per-speaker CMVN from the data dir's cmvn.scp (means, optionally variances), then Kaldi add-deltas."""

    cmvn: bool = True
    norm_vars: bool = False
    delta_order: int = 0
    delta_window: int = 2

    def apply(self, feats, cmvn_stats, where: str) -> torch.Tensor:
        """Transform one utterance's (T, dim) features to float32; `where` names it in errors."""
        x = torch.as_tensor(feats, dtype=torch.float32)
        if x.ndim != 2 or x.shape[0] == 0:
            raise EsgdError(f"{where}: expected a non-empty feature matrix, got shape {tuple(x.shape)}")
        if self.cmvn:
            x = apply_cmvn(x, cmvn_stats, self.norm_vars, where)
        if self.delta_order > 0:
            x = add_deltas(x, self.delta_order, self.delta_window)
        return x


class FeatureSource:
    """The utterances of a Kaldi data dir (feats.scp, utt2spk, cmvn.scp) passed through a FrontEnd."""

    def __init__(self, data_dir: str | Path, front_end: FrontEnd):
        self.data_dir, self.front_end = Path(data_dir), front_end
        self.feats = ScpReader(self.data_dir / "feats.scp")
        spk_file = self.data_dir / "utt2spk"
        self.utt2spk = read_table(spk_file) if spk_file.is_file() else {u: u for u in self.feats.keys()}
        self.cmvn = ScpReader(self.data_dir / "cmvn.scp") if front_end.cmvn else None
        self.utts = sorted(self.feats.keys(), key=str.encode)
        for utt in self.utts:
            if utt not in self.utt2spk:
                raise EsgdError(f"{spk_file}: no speaker for utterance '{utt}'")

    def spk2utt(self) -> dict[str, list[str]]:
        """Speakers of this source in sorted order, each with its utterances."""
        out: dict[str, list[str]] = {}
        for utt in self.utts:
            out.setdefault(self.utt2spk[utt], []).append(utt)
        return {spk: out[spk] for spk in sorted(out, key=str.encode)}

    def shard(self, nj: int, job: int) -> "FeatureSource":
        """Job `job` (1-based) of `nj`: speakers dealt out in contiguous blocks, as Kaldi's split_data.sh."""
        spk2utt = self.spk2utt()
        part = copy.copy(self)
        part.utts = [u for spk in split_share(list(spk2utt), nj, job) for u in spk2utt[spk]]
        return part

    def __len__(self) -> int:
        return len(self.utts)

    def load(self, utt: str) -> torch.Tensor:
        """Features of one utterance after the front end."""
        stats = self.cmvn[self.utt2spk[utt]] if self.cmvn is not None else None
        return self.front_end.apply(self.feats[utt], stats, f"{self.feats.scp}: utterance '{utt}'")

    def __iter__(self) -> Iterator[tuple[str, torch.Tensor]]:
        for utt in self.utts:
            yield utt, self.load(utt)
