"""The TransitionModel at the head of a Kaldi `final.mdl` (a GMM or nnet3 acoustic model, binary or text), read far
enough to map transition-ids to pdfs: what a Kaldi alignment dir's `ali.*.gz` needs to become senone targets, and
what decoding needs to turn pdf scores into transition-id scores.

Binary layout (Kaldi's HmmTopology / TransitionModel::Write): tokens end in a space; an int32 or float is a size
byte (4) and its little-endian value; an integer vector is a size byte, an int32 count and the raw values; the
topology is `phones`, `phone2idx`, an optional -1 marking the format with self-loop pdf classes, then per entry
its states (forward pdf class, [self-loop pdf class], transitions as (destination, probability)); then `<Tuples>`
(phone, HMM state, forward pdf, self-loop pdf) or the older `<Triples>` (phone, HMM state, pdf).
"""
from __future__ import annotations

import re
import struct
from pathlib import Path

import kaldi_hmm_gmm as khg
import numpy as np

from esgd_asr.errors import EsgdError
from esgd_asr.gmm.model import GmmHmm, TransitionInfo, transition_model_from_tuples


def is_kaldi_model(path: str | Path) -> bool:
    """Whether `path` starts with a Kaldi TransitionModel (binary or text)."""
    with open(path, "rb") as f:
        head = f.read(32)
    return (head[2:] if head.startswith(b"\0B") else head).lstrip().startswith(b"<TransitionModel>")


class _BinaryReader:
    def __init__(self, data: bytes, where: str):
        self.data, self.pos, self.where = data, 2, where

    def fail(self, what: str):
        raise EsgdError(f"{self.where}: not a Kaldi binary transition model ({what} at byte {self.pos})")

    def token(self, expected: str | None = None) -> str:
        end = self.data.find(b" ", self.pos)
        if end < 0:
            self.fail("no token")
        token, self.pos = self.data[self.pos:end].decode(errors="replace"), end + 1
        if expected is not None and token != expected:
            self.fail(f"{token!r} where {expected} belongs")
        return token

    def number(self, fmt: str) -> int | float:
        if self.data[self.pos:self.pos + 1] != b"\x04" or self.pos + 5 > len(self.data):
            self.fail("no 4-byte number")
        value = struct.unpack_from(fmt, self.data, self.pos + 1)[0]
        self.pos += 5
        return value

    def int_vector(self) -> np.ndarray:
        count = self.number("<i")
        if not 0 <= count <= (len(self.data) - self.pos) // 4:
            self.fail(f"a vector of {count} integers past the end")
        values = np.frombuffer(self.data, "<i4", count, self.pos)
        self.pos += 4 * count
        return values


def _binary_topology(reader: _BinaryReader) -> str:
    """Kaldi's text form of a binary HmmTopology (kaldi-hmm-gmm reads topologies as text)."""
    reader.token("<Topology>")
    phones, phone2idx = reader.int_vector(), reader.int_vector()
    entries = reader.number("<i")
    loop_classes = entries == -1
    if loop_classes:
        entries = reader.number("<i")
    lines = ["<Topology>"]
    for index in range(entries):
        members = " ".join(str(p) for p in phones if phone2idx[p] == index)
        lines += ["<TopologyEntry>", f"<ForPhones> {members} </ForPhones>"]
        for state in range(reader.number("<i")):
            forward = reader.number("<i")
            loop = reader.number("<i") if loop_classes else forward
            arcs = [(reader.number("<i"), reader.number("<f")) for _ in range(reader.number("<i"))]
            classes = "" if forward < 0 else (f" <ForwardPdfClass> {forward} <SelfLoopPdfClass> {loop}"
                                              if loop_classes else f" <PdfClass> {forward}")
            lines.append(f"<State> {state}{classes}" + "".join(f" <Transition> {d} {p!r}" for d, p in arcs)
                         + " </State>")
        lines.append("</TopologyEntry>")
    reader.token("</Topology>")
    return "\n".join(lines + ["</Topology>", ""])


def _read(path: Path) -> tuple[str, list[tuple[int, int, int, int]]]:
    """(topology text, transition-state tuples) of the model file."""
    data = path.read_bytes()
    if data.startswith(b"\0B"):
        reader = _BinaryReader(data, str(path))
        reader.token("<TransitionModel>")
        topology = _binary_topology(reader)
        kind = reader.token()
        width = {"<Tuples>": 4, "<Triples>": 3}.get(kind) or reader.fail(f"{kind!r} where <Tuples> belongs")
        rows = [[reader.number("<i") for _ in range(width)] for _ in range(reader.number("<i"))]
    else:
        text = data.decode(errors="replace")
        match = re.search(r"(<Topology>.*?</Topology>)\s*<(Tuples|Triples)>\s*(\d+)(.*?)</\2>", text, re.S)
        if match is None:
            raise EsgdError(f"{path}: not a Kaldi text transition model (no <Topology> and <Tuples>)")
        topology, width = match.group(1), 4 if match.group(2) == "Tuples" else 3
        try:
            values = [int(v) for v in match.group(4).split()]
        except ValueError:
            raise EsgdError(f"{path}: non-integer entry in <{match.group(2)}>") from None
        if len(values) != width * int(match.group(3)):
            raise EsgdError(f"{path}: <{match.group(2)}> holds {len(values)} numbers, not {match.group(3)} rows")
        rows = [values[i:i + width] for i in range(0, len(values), width)]
    return topology, [(r[0], r[1], r[2], r[-1]) for r in rows]


def read_kaldi_transitions(path: str | Path) -> tuple[TransitionInfo, int]:
    """(TransitionInfo, number of pdfs) of a Kaldi final.mdl's transition model; transition-ids are numbered as
    Kaldi numbers them (per transition state, its HMM state's transitions in topology order)."""
    path = Path(path)
    topology, tuples = _read(path)
    topo = khg.HmmTopology()
    try:
        topo.read(topology)
    except RuntimeError as err:
        raise EsgdError(f"{path}: unreadable topology ({str(err).strip().splitlines()[-1]})") from None
    if not tuples:
        raise EsgdError(f"{path}: the transition model has no transition states")
    num_pdfs = 1 + max(max(t[2], t[3]) for t in tuples)
    return TransitionInfo.of(transition_model_from_tuples(topo, tuples, num_pdfs)), num_pdfs


def load_transitions(path: str | Path) -> tuple[TransitionInfo, int]:
    """(TransitionInfo, number of pdfs) of a model file: a Kaldi final.mdl or a GMM-HMM of ours."""
    if Path(path).is_file() and is_kaldi_model(path):
        return read_kaldi_transitions(path)
    model = GmmHmm.load(path)
    return model.transitions(), model.num_pdfs
