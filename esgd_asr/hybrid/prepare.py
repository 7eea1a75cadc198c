"""Training data of the hybrid DNN / BiLSTM: a data dir's features, a GMM system's alignments (senone targets) and
optionally online i-vectors, turned into the (features, targets) tensors the trainers take
(`esgd_asr.population.data.as_tensors`).

    config = load_model_config("conf/dnn.yaml")          # or conf/blstm.yaml (chunks, i-vectors)
    sets = prepare_hybrid_sets(config, "data/train_fmllr", "exp/tri3_ali", "data/dev_fmllr", "exp/tri3_ali_dev",
                               train_ivectors=None, valid_ivectors=None, cmvn=False)
    model = build_model(sets.fit_config(config))         # input dim and senone count from the data
    sets.train, sets.valid    # DNN: (N, splice * dim), (N,); BiLSTM: (C, W, dim), (C, W), W = chunk + its context
    sets.save("exp/dnn/egs.pt"); HybridSets.load(...)    # torch only: loads where Kaldi packages are absent

The validation set is a held-out data dir aligned by the same GMM system (steps/align_si.sh on data/dev), so that
validation CE (ESGD's fitness) has senone targets. An alignment dir is `ali.*.ark` (transition-ids) + `final.mdl`
(+ `pdf_counts`, `num_jobs`), ours or Kaldi's (`ali.*.gz`, a Kaldi final.mdl in binary or text:
esgd_asr.gmm.kaldi_model); an i-vector dir is `ivector_online.scp` + `ivector_period`.

`NnetInput` says how features become network input: per-speaker CMVN from cmvn.scp and deltas (a FrontEnd),
splicing context (DNN) or chunk length (BiLSTM), online i-vectors appended, then a global mean/variance
normalisation estimated on the training frames. It is saved with every hybrid model (`to_dict`) so that decoding
and anchors see the same input (`frames` + `tensors`, or `utterance_inputs`).
"""
from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np
import torch

from esgd_asr.errors import EsgdError
from esgd_asr.features.cmvn import cmvn_offset_scale, cmvn_stats
from esgd_asr.features.feature_io import ScpReader
from esgd_asr.features.feature_source import FrontEnd
from esgd_asr.gmm.align import ali_to_pdf, read_alignments
from esgd_asr.gmm.kaldi_model import load_transitions
from esgd_asr.hybrid.frames import FrameSet, all_spliced, chunks, load_frame_set, spliced
from esgd_asr.hybrid.model_file import load_hybrid_model
from esgd_asr.hybrid.sets import HybridSets, fit_config
from esgd_asr.models.blstm import BLSTMConfig
from esgd_asr.models.dnn import DNNConfig
from esgd_asr.models.kaldi_nnet3 import is_nnet3_file
from esgd_asr.models.nnet3_architecture import Nnet3Config
from esgd_asr.population.data import Data

log = logging.getLogger(__name__)
KINDS = ("dnn", "blstm")


@dataclass
class Senones:
    """Per-frame pdf-ids (senones) of every aligned utterance of an alignment dir, and frames per pdf."""

    targets: dict[str, np.ndarray]
    num_pdfs: int
    num_transition_ids: int
    counts: np.ndarray


def alignment_archives(ali_dir: str | Path) -> list[Path]:
    """ali.1.ark .. ali.<num_jobs>.ark, or Kaldi's ali.J.gz (all ali.*.ark / ali.*.gz when there is no num_jobs
    file)."""
    ali_dir = Path(ali_dir)
    if (ali_dir / "num_jobs").is_file():
        archives = [ali_dir / f"ali.{j}.ark" for j in range(1, int((ali_dir / "num_jobs").read_text()) + 1)]
        archives = [p if p.is_file() or not p.with_suffix(".gz").is_file() else p.with_suffix(".gz")
                    for p in archives]
    else:
        archives = sorted([*ali_dir.glob("ali.*.ark"), *ali_dir.glob("ali.*.gz")],
                          key=lambda p: int(p.name.split(".")[1]))
    if not archives:
        raise EsgdError(f"{ali_dir}: no alignments (ali.*.ark or ali.*.gz)")
    return archives


def read_pdf_counts(path: str | Path, num_pdfs: int | None) -> np.ndarray:
    """A Kaldi text vector `[ c0 c1 ... ]` of frames per pdf (esgd-align counts), checked against `num_pdfs`
    (None: the model's output width, checked where the model is used)."""
    path = Path(path)
    try:
        fields = path.read_text().split()
    except OSError as err:
        raise EsgdError(f"{path}: cannot read pdf counts ({err.strerror})") from None
    if len(fields) < 2 or fields[0] != "[" or fields[-1] != "]":
        raise EsgdError(f"{path}: expected a Kaldi text vector '[ c0 c1 ... ]'")
    try:
        counts = np.array([float(f) for f in fields[1:-1]])
    except ValueError:
        raise EsgdError(f"{path}: non-numeric pdf count") from None
    if len(counts) != (num_pdfs or len(counts)) or (counts < 0).any():
        raise EsgdError(f"{path}: {len(counts)} non-negative counts expected {num_pdfs} (the model's pdfs)")
    return counts


def read_senones(ali_dir: str | Path) -> Senones:
    """Senone targets of an alignment dir: ali.*.ark / ali.*.gz mapped to pdf-ids with its final.mdl; counts from
    pdf_counts when present (else counted here)."""
    ali_dir = Path(ali_dir)
    info, num_pdfs = load_transitions(ali_dir / "final.mdl")
    targets = {}
    for path in alignment_archives(ali_dir):
        for utt, ali in read_alignments(path):
            if len(ali) and (ali.min() < 1 or ali.max() >= len(info.pdf)):
                raise EsgdError(f"{path}: utterance '{utt}' has transition-ids outside 1..{len(info.pdf) - 1} "
                                f"of {ali_dir / 'final.mdl'}")
            targets[utt] = ali_to_pdf(ali, info)
    if not targets:
        raise EsgdError(f"{ali_dir}: the alignment archives hold no utterance")
    if (ali_dir / "pdf_counts").is_file():
        counts = read_pdf_counts(ali_dir / "pdf_counts", num_pdfs)
    else:
        counts = np.bincount(np.concatenate(list(targets.values())), minlength=num_pdfs).astype(float)
    return Senones(targets, num_pdfs, len(info.pdf) - 1, counts)


def read_ivector_period(ivector_dir: str | Path) -> int:
    path = Path(ivector_dir) / "ivector_period"
    if not path.is_file():
        raise EsgdError(f"{path}: no such file (an i-vector dir from steps/extract_ivectors.sh?)")
    return int(path.read_text().split()[0])


@dataclass(frozen=True)
class NnetInput:
    """How a data dir's features become the input of a hybrid network (saved with the model).

    kind: dnn (frames spliced with left/right context) or blstm (chunks of `chunk` consecutive frames, with up
    to chunk_left_context / chunk_right_context frames of context that carry no targets);
    cmvn / norm_vars / delta_order: the per-speaker FrontEnd on feats.scp; ivector_period: online i-vectors
    appended (one row per that many frames), 0 = none; global_stats: Kaldi CMVN stats (2, dim + 1) of the
    training frames, applied with variance normalisation (empty until `fitted`).
    """

    kind: str = "dnn"
    cmvn: bool = False
    norm_vars: bool = False
    delta_order: int = 0
    left_context: int = 4
    right_context: int = 4
    chunk: int = 21
    chunk_left_context: int = 0
    chunk_right_context: int = 0
    ivector_period: int = 0
    global_stats: tuple = ()

    def __post_init__(self):
        if self.kind not in KINDS:
            raise EsgdError(f"nnet input: unknown kind {self.kind!r} (choose from {', '.join(KINDS)})")
        if min(self.left_context, self.right_context, self.chunk_left_context, self.chunk_right_context,
               self.delta_order, self.ivector_period) < 0 or self.chunk < 1:
            raise EsgdError("nnet input: contexts, delta order and i-vector period must be >= 0, chunk >= 1")

    @classmethod
    def for_model(cls, config: DNNConfig | BLSTMConfig, **options) -> "NnetInput":
        """The input a model config asks for: a DNN's `splice` frames centred on each frame, a BiLSTM's chunk and
        chunk context."""
        if isinstance(config, DNNConfig):
            left = (config.splice - 1) // 2
            return cls(kind="dnn", left_context=left, right_context=config.splice - 1 - left, **options)
        if isinstance(config, BLSTMConfig):
            return cls(kind="blstm", chunk=config.chunk, chunk_left_context=config.chunk_left_context,
                       chunk_right_context=config.chunk_right_context, **options)
        raise EsgdError(f"nnet input: no hybrid input for a {type(config).__name__}")

    @classmethod
    def from_dict(cls, values: dict, where: str = "nnet input") -> "NnetInput":
        known = {f.name for f in dataclasses.fields(cls)}
        if not isinstance(values, dict) or set(values) - known:
            raise EsgdError(f"{where}: not an nnet input description")
        values = dict(values)
        values["global_stats"] = tuple(tuple(row) for row in values.get("global_stats", ()))
        return cls(**values)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @property
    def front_end(self) -> FrontEnd:
        return FrontEnd(cmvn=self.cmvn, norm_vars=self.norm_vars, delta_order=self.delta_order)

    @property
    def frame_dim(self) -> int | None:
        """Width of one input frame (features + i-vector), known once fitted."""
        return len(self.global_stats[0]) - 1 if self.global_stats else None

    def input_dim(self, frame_dim: int) -> int:
        """Last dimension of the network input for frames of width `frame_dim`."""
        return frame_dim * (self.left_context + 1 + self.right_context) if self.kind == "dnn" else frame_dim

    def frames(self, data_dir: str | Path, targets: dict[str, np.ndarray] | None = None,
               ivector_dir: str | Path | None = None, utterances: Iterable[str] | None = None) -> FrameSet:
        """The front end's frames of a data dir (+ i-vectors), globally normalised when fitted."""
        data_dir = Path(data_dir)
        if bool(self.ivector_period) != (ivector_dir is not None):
            raise EsgdError(f"{data_dir}: the network input {'needs' if self.ivector_period else 'has no'} "
                            f"i-vectors, " + ("but no i-vector dir was given" if self.ivector_period
                                               else f"but got {ivector_dir}"))
        ivector_scp = None
        if ivector_dir is not None:
            period = read_ivector_period(ivector_dir)
            if period != self.ivector_period:
                raise EsgdError(f"{Path(ivector_dir) / 'ivector_period'}: period {period}, the network input "
                                f"was made with {self.ivector_period}")
            ivector_scp = Path(ivector_dir) / "ivector_online.scp"
        cmvn = ScpReader(data_dir / "cmvn.scp") if self.cmvn else None
        front_end = self.front_end

        def transform(utt: str, spk: str, feats: torch.Tensor) -> torch.Tensor:
            return front_end.apply(feats, cmvn[spk] if cmvn is not None else None,
                                   f"{data_dir / 'feats.scp'}: utterance '{utt}'")

        frames = load_frame_set(data_dir, transform, targets, ivector_scp, self.ivector_period or 10, utterances)
        if self.global_stats:
            self.normalise(frames, str(data_dir))
        return frames

    def fitted(self, frames: FrameSet) -> "NnetInput":
        """A copy whose global normalisation is estimated on `frames` (the training set, not yet normalised)."""
        stats = cmvn_stats(frames.features, "training frames")
        return dataclasses.replace(self, global_stats=tuple(tuple(row) for row in stats.tolist()))

    def normalise(self, frames: FrameSet, where: str) -> None:
        """Apply the global mean/variance normalisation to `frames` in place."""
        stats = torch.tensor(self.global_stats, dtype=torch.float64)
        if frames.dim != stats.shape[1] - 1:
            raise EsgdError(f"{where}: frames of dim {frames.dim}, the network input was made for "
                            f"{stats.shape[1] - 1} (features{' + i-vector' if self.ivector_period else ''})")
        offset, scale = cmvn_offset_scale(stats, True, where)
        frames.features.mul_(scale.float()).add_(offset.float())

    def tensors(self, frames: FrameSet) -> Data:
        """(features, targets) of every frame with a target: DNN spliced frames, BiLSTM chunks."""
        if self.kind == "dnn":
            return all_spliced(frames, self.left_context, self.right_context)
        return chunks(frames, self.chunk, self.chunk_left_context, self.chunk_right_context)

    def utterance_inputs(self, frames: FrameSet) -> tuple[torch.Tensor, torch.Tensor]:
        """Network input for every frame of `frames` (decoding): (input, frame index per output row/position,
        -1 for chunk padding). DNN: (N, input_dim) and arange(N); BiLSTM: (C, chunk, dim) and (C, chunk)."""
        everything = torch.arange(frames.num_frames)
        if self.kind == "dnn":
            return spliced(frames, everything, self.left_context, self.right_context), everything
        # chunks() pads with IGNORE targets: with frame indices as targets it tells where each output belongs
        x, index = chunks(FrameSet(frames.features, everything, frames.offsets, frames.utterances), self.chunk,
                          self.chunk_left_context, self.chunk_right_context)
        return x, torch.where(index < 0, -1, index)


def check_same_system(train: Senones, valid: Senones, train_ali: Path, valid_ali: Path) -> None:
    if (train.num_pdfs, train.num_transition_ids) != (valid.num_pdfs, valid.num_transition_ids):
        raise EsgdError(f"{valid_ali / 'final.mdl'}: {valid.num_pdfs} pdfs / {valid.num_transition_ids} "
                        f"transition-ids, but {train_ali / 'final.mdl'} has {train.num_pdfs} / "
                        f"{train.num_transition_ids}: align both sets with the same GMM system")


def data_shape(train_dir: str | Path, train_ali: str | Path, train_ivectors: str | Path | None = None,
               delta_order: int = 0) -> tuple[int, int]:
    """(frame width, senone count) of training data without preparing them: the first utterance's features
    (times delta_order + 1) plus the i-vector dim, and the pdfs of the alignment dir's final.mdl."""
    feats = ScpReader(Path(train_dir) / "feats.scp")
    if not len(feats):
        raise EsgdError(f"{Path(train_dir) / 'feats.scp'}: no utterances")
    width = feats[feats.keys()[0]].shape[1] * (delta_order + 1)
    if train_ivectors is not None:
        ivectors = ScpReader(Path(train_ivectors) / "ivector_online.scp")
        width += ivectors[ivectors.keys()[0]].shape[1] if len(ivectors) else 0
    return width, load_transitions(Path(train_ali) / "final.mdl")[1]


def network_input(config: DNNConfig | BLSTMConfig, train_dir: str | Path, train_ali: str | Path,
                  train_ivectors: str | Path | None = None, cmvn: bool = False, norm_vars: bool = False,
                  delta_order: int = 0, model: str | Path | None = None) -> tuple[DNNConfig | BLSTMConfig, NnetInput]:
    """The model config and NnetInput the training data are to be made with. `model` (an anchor or initial model)
    is checked first, before any data are prepared, against the data's frame width and senone count
    (`data_shape`); a Kaldi nnet3 import brings its own architecture (a DNNConfig, or an Nnet3Config for a TDNN
    and the like) and input (i-vectors at the i-vector dir's period, no normalisation of ours), which are returned
    instead, as are those of a model file of ours of an Nnet3Config (an evolved TDNN)."""
    period = read_ivector_period(train_ivectors) if train_ivectors is not None else 0
    nnet_input = NnetInput.for_model(config, cmvn=cmvn, norm_vars=norm_vars, delta_order=delta_order,
                                     ivector_period=period)
    if model is None:
        return config, nnet_input
    frame_width, num_pdfs = data_shape(train_dir, train_ali, train_ivectors, delta_order)
    if not Path(model).is_file() or not is_nnet3_file(model):
        fitted = fit_config(config, nnet_input.to_dict(), frame_width, num_pdfs)
        loaded = load_hybrid_model(model, fitted)
        if not isinstance(loaded.config, Nnet3Config):  # one of an nnet3 architecture goes on as an import
            loaded.check(nnet_input.input_dim(frame_width), num_pdfs, nnet_input.chunk, nnet_input.kind)
            return config, nnet_input
    else:
        loaded = load_hybrid_model(model)
    if bool(loaded.nnet_input["ivector_period"]) != (train_ivectors is not None):
        given = f"but got {train_ivectors}" if train_ivectors else "but no i-vector dir was given"
        raise EsgdError(f"{model}: the model has {'an' if loaded.nnet_input['ivector_period'] else 'no'} i-vector "
                        f"input, {given}")
    loaded.take_ivector_period(period)
    declared = NnetInput.from_dict(loaded.nnet_input, str(model))
    loaded.check(declared.input_dim(frame_width), num_pdfs)
    if isinstance(config, BLSTMConfig):
        raise EsgdError(f"{model}: a feed-forward network, but the model config describes a {type(config).__name__}")
    log.info("%s: the population takes the model's architecture %s and input", model, loaded.config)
    return loaded.config, declared


def prepare_hybrid_sets(config: DNNConfig | BLSTMConfig, train_dir: str | Path, train_ali: str | Path,
                        valid_dir: str | Path, valid_ali: str | Path, train_ivectors: str | Path | None = None,
                        valid_ivectors: str | Path | None = None, cmvn: bool = False, norm_vars: bool = False,
                        delta_order: int = 0, nnet_input: NnetInput | None = None) -> HybridSets:
    """Training and validation tensors with senone targets for the model type of `config` (see module doc); with
    `nnet_input` (a model's own, normalisation included) the frames are made as it says."""
    train_ali, valid_ali = Path(train_ali), Path(valid_ali)
    if (train_ivectors is None) != (valid_ivectors is None):
        raise EsgdError("i-vectors must be given for both the training and the validation set, or for neither")
    train_senones, valid_senones = read_senones(train_ali), read_senones(valid_ali)
    check_same_system(train_senones, valid_senones, train_ali, valid_ali)
    if nnet_input is None:
        period = read_ivector_period(train_ivectors) if train_ivectors is not None else 0
        nnet_input = NnetInput.for_model(config, cmvn=cmvn, norm_vars=norm_vars, delta_order=delta_order,
                                         ivector_period=period)
    train_frames = nnet_input.frames(train_dir, train_senones.targets, train_ivectors)
    if not nnet_input.global_stats:
        nnet_input = nnet_input.fitted(train_frames)
        nnet_input.normalise(train_frames, str(train_dir))
    valid_frames = nnet_input.frames(valid_dir, valid_senones.targets, valid_ivectors)
    log.info("%s: %d frames of %d utterances; %s: %d frames of %d utterances; %d senones, frame dim %d",
             train_dir, train_frames.num_frames, len(train_frames.utterances), valid_dir, valid_frames.num_frames,
             len(valid_frames.utterances), train_senones.num_pdfs, train_frames.dim)
    return HybridSets(nnet_input.tensors(train_frames), nnet_input.tensors(valid_frames), nnet_input.to_dict(),
                      train_frames.dim, train_senones.num_pdfs, torch.tensor(train_senones.counts))
