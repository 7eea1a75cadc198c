"""Decision-tree state tying (senones) for context-dependent GMM-HMMs, done as Kaldi does it.

Kaldi's tree tools, re-implemented on numpy because kaldi-hmm-gmm can neither build nor read trees:

- `TreeStatsAccumulator` / `accumulate_tree_stats` (acc-tree-stats): for every seen *event*
  (phone at each context position, pdf-class) the count, sum and sum of squares of the frames aligned to it.
  Context-independent phones (silence) record only their own identity and pdf-class: their context is not asked
  about. Utterance edges are phone 0.
- `build_tree` (build-tree): one root per line of `phones/roots.int`, pdf-classes separated first at shared roots,
  then greedy splitting of the leaf with the best log-likelihood gain over all (key, question) pairs until the gain
  is at most `thresh` or `num_leaves` leaves exist, then bottom-up clustering of leaves within their root
  (ClusterEventMapRestrictedByMap) and numbering of leaves = pdf ids. Questions come from `questions.py`
  (cluster-phones, compile-questions).
- `ContextTree` (ContextDependency): (phone window, pdf-class) -> pdf for any context, vectorised lookup, what the
  transition model and H need (`pdf_tuples`, `pdf_info`, `transition_tuples`), and per-pdf statistics for
  initialising the GMMs (gmm-init-model).

Objective (Kaldi's GaussClusterable): a set of frames with count n, sums s, squares q scores the log-likelihood of
its data under the maximum-likelihood diagonal Gaussian with variances floored at `var_floor`:
    objf = n * sum_d -0.5 * (v_d / f_d + log f_d + log 2 pi),   v = q/n - (s/n)^2,  f = max(v, var_floor).

Where this differs from Kaldi: with `pdf_class_first` (default) the pdf-classes of a shared root are separated
before any other question whatever the gain (Kaldi's greedy search usually does this first anyway; off, the search
is Kaldi's), and clustering then stays within a root *and* pdf-class, so no pdf is shared between HMM states;
leaves are merged while the cost is strictly below the threshold (Kaldi: at most); pdf ids are numbered in
depth-first order of the tree (Kaldi: by leaf allocation order); the phone clustering's 2-means uses seeded random
restarts (`questions.py`).

Events are integer rows `(p_0, ..., p_{N-1}, pdf_class)`: the phones of the context window (N = context width,
the central phone at column P = central position) and the pdf-class. For N=3, P=1 a row is
(left, centre, right, pdf_class). A context position that is not recorded (context-independent centre phone) holds
`ABSENT` (-1). Kaldi's event keys are the window positions 0..N-1 and `PDF_CLASS` (-1), which is column N here.

Tree file (`ContextTree.save`): Kaldi's text form of a ContextDependency, then an esgd trailer that Kaldi's reader
does not look at::

    ContextDependency 3 1 ToPdf
    SE 1 [ 1 2 3 4 5 ]            # SplitEventMap: key, yes-set, then { yes-subtree no-subtree }
    { ...
      SE -1 [ 0 ]
      { CE 0                      # ConstantEventMap: a leaf, its pdf id
        TE -1 2 ( NULL CE 7 ) }   # TableEventMap: key, size, ( one subtree or NULL per value )
      ... }
    EndContextDependency
    EsgdTreeInfo
    NumPdfClasses 3 [ 6 7 8 ] 5 [ 1 2 ]       # number of pdf-classes, the phones that have it; repeated
    ContextIndependentPhones [ 1 2 ]
    EndEsgdTreeInfo
"""
from __future__ import annotations

import heapq
import math
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch

from esgd_asr.atomic import atomic_path, atomic_write_text
from esgd_asr.errors import EsgdError
from esgd_asr.option_file import read_option_file

PDF_CLASS = -1  # Kaldi's kPdfClass event key
ABSENT = -1  # value of a context position that was not recorded (context-independent phones)
LOG_2PI = math.log(2.0 * math.pi)


# --------------------------------------------------------------------------------------------------------------
# Gaussian statistics and objective
# --------------------------------------------------------------------------------------------------------------

def gauss_objf(stats: np.ndarray, var_floor: float) -> np.ndarray:
    """Kaldi's GaussClusterable::Objf for stats rows `[count, sum (D), sum of squares (D)]` (shape (..., 1 + 2D));
    0 where the count is not positive."""
    stats = np.asarray(stats, dtype=np.float64)
    count = stats[..., 0]
    dim = (stats.shape[-1] - 1) // 2
    n = np.where(count > 0, count, 1.0)[..., None]
    mean = stats[..., 1:1 + dim] / n
    var = stats[..., 1 + dim:] / n - mean * mean
    floored = np.maximum(var, var_floor)
    per_frame = -0.5 * (var / floored + np.log(floored) + LOG_2PI).sum(-1)
    return np.where(count > 0, count * per_frame, 0.0)


def merge_cost(a: np.ndarray, b: np.ndarray, var_floor: float) -> np.ndarray:
    """Loss of objective from pooling a and b (Kaldi's Clusterable::Distance), broadcasting over leading dims."""
    return gauss_objf(a, var_floor) + gauss_objf(b, var_floor) - gauss_objf(a + b, var_floor)


def _unique_rows(events: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted unique rows of an int array and, per input row, the index of its unique row."""
    if len(events) == 0:
        return events.reshape(0, events.shape[1]), np.zeros(0, dtype=np.int64)
    shifted = events.astype(np.int64) + 1  # ABSENT -> 0
    if shifted.min() < 0:
        raise EsgdError(f"tree statistics: negative phone or pdf-class value {int(events.min())}")
    cols = shifted.shape[1]
    bits = max(1, int(shifted.max()).bit_length())
    if bits * cols <= 62:
        key = np.zeros(len(shifted), dtype=np.int64)
        for c in range(cols):
            key = (key << bits) | shifted[:, c]
        _, first, inverse = np.unique(key, return_index=True, return_inverse=True)
        return events[first], inverse.reshape(-1)
    uniq, inverse = np.unique(events, axis=0, return_inverse=True)
    return uniq, inverse.reshape(-1)


def _sum_small(values: np.ndarray, width: int, rows: np.ndarray) -> np.ndarray:
    """(width, W) sums of `rows` by their small non-negative integer `values` (a stable radix sort and reduceat:
    faster than np.add.at or index_add_ into few rows)."""
    out = np.zeros((width, rows.shape[1]))
    if len(values):
        order = np.argsort(values.astype(np.int32 if width >= 2 ** 15 else np.int16), kind="stable")
        sv = values[order]
        starts = np.flatnonzero(np.r_[True, sv[1:] != sv[:-1]])
        out[sv[starts]] = np.add.reduceat(rows[order], starts, axis=0)
    return out


def _sum_by(inverse: np.ndarray, num: int, values: np.ndarray) -> np.ndarray:
    """Rows of `values` (float64) summed by group index 0..num-1 (torch's index_add_: ~10x numpy's add.at)."""
    out = torch.zeros((num,) + values.shape[1:], dtype=torch.float64)
    out.index_add_(0, torch.from_numpy(np.ascontiguousarray(inverse, dtype=np.int64)),
                   torch.from_numpy(np.ascontiguousarray(values, dtype=np.float64)))
    return out.numpy()


# --------------------------------------------------------------------------------------------------------------
# Tree statistics (acc-tree-stats, sum-tree-stats)
# --------------------------------------------------------------------------------------------------------------

@dataclass
class TreeStats:
    """Gaussian statistics per seen event: `events` (E, N + 1) int, `stats` (E, 1 + 2D) float64
    ([count, sum, sum of squares]); rows unique and sorted."""

    events: np.ndarray
    stats: np.ndarray
    context_width: int = 3
    central_position: int = 1
    var_floor: float = 0.01

    def __post_init__(self):
        self.events = np.asarray(self.events, dtype=np.int32).reshape(-1, self.context_width + 1)
        self.stats = np.asarray(self.stats, dtype=np.float64)
        if self.stats.ndim != 2 or len(self.stats) != len(self.events) or self.stats.shape[1] % 2 != 1:
            raise EsgdError(f"tree statistics: {len(self.events)} events but stats of shape {self.stats.shape}")
        if not 0 <= self.central_position < self.context_width:
            raise EsgdError(f"tree statistics: central position {self.central_position} outside a context "
                            f"window of width {self.context_width}")
        self._index: dict[tuple, int] | None = None

    @property
    def dim(self) -> int:
        return (self.stats.shape[1] - 1) // 2

    @property
    def count(self) -> np.ndarray:
        return self.stats[:, 0]

    @property
    def num_frames(self) -> float:
        return float(self.stats[:, 0].sum())

    def __len__(self) -> int:
        return len(self.events)

    def _lookup(self) -> dict[tuple, int]:
        if self._index is None:
            self._index = {tuple(int(v) for v in e): i for i, e in enumerate(self.events)}
        return self._index

    def __contains__(self, event) -> bool:
        return tuple(event) in self._lookup()

    def __getitem__(self, event) -> tuple[float, np.ndarray, np.ndarray]:
        """(count, sum, sum of squares) of one event tuple, e.g. (left, centre, right, pdf_class)."""
        i = self._lookup()[tuple(event)]
        d = self.dim
        return float(self.stats[i, 0]), self.stats[i, 1:1 + d], self.stats[i, 1 + d:]

    def items(self):
        for e in self._lookup():
            yield e, self[e]

    def to_dict(self) -> dict[tuple, tuple[float, np.ndarray, np.ndarray]]:
        return dict(self.items())

    def central_phones(self) -> np.ndarray:
        return np.unique(self.events[:, self.central_position])

    def context_independent_phones(self) -> list[int]:
        """Central phones whose events do not record their context."""
        others = [c for c in range(self.context_width) if c != self.central_position]
        if not others:
            return []
        absent = (self.events[:, others] == ABSENT).any(1)
        return sorted(int(p) for p in np.unique(self.events[absent, self.central_position]))

    def _check_compatible(self, other: "TreeStats") -> None:
        if (other.context_width, other.central_position) != (self.context_width, self.central_position) \
                or (len(other) and len(self) and other.dim != self.dim):
            raise EsgdError("tree statistics with different context windows or feature dimensions cannot be added")

    def __add__(self, other: "TreeStats") -> "TreeStats":
        """Sum of two accumulations (sum-tree-stats)."""
        self._check_compatible(other)
        if not len(other):
            return self
        if not len(self):
            return other
        events = np.concatenate([self.events, other.events])
        stats = np.concatenate([self.stats, other.stats])
        uniq, inverse = _unique_rows(events)
        return TreeStats(uniq, _sum_by(inverse, len(uniq), stats), self.context_width, self.central_position,
                         self.var_floor)

    def select(self, mask: np.ndarray) -> "TreeStats":
        return TreeStats(self.events[mask], self.stats[mask], self.context_width, self.central_position,
                         self.var_floor)

    def objf(self) -> float:
        """Objective with every event its own cluster."""
        return float(gauss_objf(self.stats, self.var_floor).sum())

    def save(self, path: str | Path) -> None:
        """Write as .npz atomically."""
        with atomic_path(path, suffix=".npz") as tmp:
            np.savez(tmp, events=self.events, stats=self.stats, context_width=self.context_width,
                     central_position=self.central_position, var_floor=self.var_floor)

    @classmethod
    def load(cls, path: str | Path) -> "TreeStats":
        path = Path(path)
        if not path.is_file():
            raise EsgdError(f"{path}: no such tree statistics file (did its job fail?)")
        try:
            with np.load(path) as z:
                return cls(z["events"], z["stats"], int(z["context_width"]), int(z["central_position"]),
                           float(z["var_floor"]))
        except (OSError, KeyError, ValueError) as err:
            raise EsgdError(f"{path}: unreadable tree statistics ({err})") from None


class TreeStatsAccumulator:
    """Accumulates tree statistics utterance by utterance (acc-tree-stats), vectorised within utterances and
    reduced in chunks of frames."""

    def __init__(self, ci_phones: Iterable[int] = (), context_width: int = 3, central_position: int = 1,
                 var_floor: float = 0.01, chunk_frames: int = 100_000):
        if not 0 <= central_position < context_width:
            raise EsgdError(f"central position {central_position} outside a context window of width "
                            f"{context_width}")
        self.ci_phones = np.array(sorted(set(int(p) for p in ci_phones)), dtype=np.int64)
        self.N, self.P, self.var_floor = context_width, central_position, var_floor
        self.chunk_frames = chunk_frames
        self._events: list[np.ndarray] = []
        self._feats: list[np.ndarray] = []
        self._buffered = 0
        self._chunks: list[TreeStats] = []
        self.dim: int | None = None

    def add(self, feats: np.ndarray, phones: np.ndarray, pdf_classes: np.ndarray,
            phone_starts: np.ndarray | None = None) -> None:
        """One utterance: features (T, D), the phone (T,) and pdf-class (T,) of each frame, and optionally which
        frames start a phone instance (T,) bool; without it a new instance starts wherever the phone changes
        (so two adjacent instances of one phone would be taken as one)."""
        feats = np.asarray(feats, dtype=np.float64)
        phones = np.asarray(phones, dtype=np.int64).reshape(-1)
        pdf_classes = np.asarray(pdf_classes, dtype=np.int64).reshape(-1)
        T = len(phones)
        if feats.ndim != 2 or len(feats) != T or len(pdf_classes) != T:
            raise EsgdError(f"tree statistics: {len(feats)} feature frames, {T} phones and {len(pdf_classes)} "
                            f"pdf-classes differ")
        if T == 0:
            return
        if self.dim is None:
            self.dim = feats.shape[1]
        elif feats.shape[1] != self.dim:
            raise EsgdError(f"tree statistics: feature dimension {feats.shape[1]}, expected {self.dim}")
        if phones.min() <= 0 or pdf_classes.min() < 0:
            raise EsgdError("tree statistics: phones must be positive and pdf-classes non-negative")
        if phone_starts is None:
            starts = np.r_[True, phones[1:] != phones[:-1]]
        else:
            starts = np.asarray(phone_starts, dtype=bool).reshape(-1).copy()
            if len(starts) != T:
                raise EsgdError(f"tree statistics: {len(starts)} phone-start flags for {T} frames")
            starts[0] = True
            if (phones[1:] != phones[:-1])[~starts[1:]].any():
                raise EsgdError("tree statistics: the phone changes inside a phone instance")
        instance = np.cumsum(starts) - 1
        inst_phone = phones[starts]
        padded = np.concatenate([np.zeros(self.P, np.int64), inst_phone, np.zeros(self.N - 1 - self.P, np.int64)])
        ctx = np.stack([padded[k:k + len(inst_phone)] for k in range(self.N)], 1)
        if len(self.ci_phones):
            ci = np.isin(inst_phone, self.ci_phones)
            others = [k for k in range(self.N) if k != self.P]
            ctx[np.ix_(ci, others)] = ABSENT
        self._events.append(np.concatenate([ctx[instance], pdf_classes[:, None]], 1).astype(np.int32))
        self._feats.append(feats)
        self._buffered += T
        if self._buffered >= self.chunk_frames:
            self._flush()

    def _flush(self) -> None:
        if not self._events:
            return
        events = np.concatenate(self._events)
        feats = np.concatenate(self._feats)
        self._events, self._feats, self._buffered = [], [], 0
        uniq, inverse = _unique_rows(events)
        stats = np.concatenate([np.bincount(inverse, minlength=len(uniq)).astype(np.float64)[:, None],
                                _sum_by(inverse, len(uniq), feats), _sum_by(inverse, len(uniq), feats * feats)], 1)
        self._chunks.append(TreeStats(uniq, stats, self.N, self.P, self.var_floor))

    def result(self) -> TreeStats:
        """The statistics so far (chunks merged once, as sum-tree-stats)."""
        self._flush()
        empty = TreeStats(np.zeros((0, self.N + 1), np.int32), np.zeros((0, 1 + 2 * (self.dim or 0))),
                          self.N, self.P, self.var_floor)
        if len(self._chunks) > 1:
            merged = TreeStats(np.concatenate([c.events for c in self._chunks]),
                               np.concatenate([c.stats for c in self._chunks]), self.N, self.P, self.var_floor)
            uniq, inverse = _unique_rows(merged.events)
            self._chunks = [TreeStats(uniq, _sum_by(inverse, len(uniq), merged.stats), self.N, self.P,
                                      self.var_floor)]
        return self._chunks[0] if self._chunks else empty


def accumulate_tree_stats(utterances: Iterable[tuple], ci_phones: Iterable[int] = (), context_width: int = 3,
                          central_position: int = 1, var_floor: float = 0.01) -> TreeStats:
    """Tree statistics of `(feats, phones, pdf_classes[, phone_starts])` per utterance (see
    `TreeStatsAccumulator.add`)."""
    acc = TreeStatsAccumulator(ci_phones, context_width, central_position, var_floor)
    for utt in utterances:
        acc.add(*utt)
    return acc.result()


def transition_id_tables(info, topo) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per transition-id (index 0 unused) of a model's `TransitionInfo` and kaldi-hmm-gmm `HmmTopology`: its phone,
    its pdf-class (the self-loop pdf-class for self-loops, else the forward one: Kaldi's TransitionIdToPdfClass),
    and whether it leaves the phone."""
    n = len(info.tstate)
    pdf_class = np.zeros(n, dtype=np.int64)
    for tid in range(1, n):
        phone, hmm_state = info.tuples[int(info.tstate[tid]) - 1][:2]
        entry = topo.topology_for_phone(int(phone))[int(hmm_state)]
        pdf_class[tid] = entry.self_loop_pdf_class if info.is_loop[tid] else entry.forward_pdf_class
    return np.asarray(info.phone, dtype=np.int64), pdf_class, np.asarray(info.is_final, dtype=bool)


def alignment_to_phone_states(tids: np.ndarray, tables: tuple[np.ndarray, np.ndarray, np.ndarray]
                              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A transition-id alignment -> (phones, pdf_classes, phone_starts) per frame, with `tables` from
    `transition_id_tables`; a phone instance starts after a frame whose transition leaves its phone."""
    tids = np.asarray(tids, dtype=np.int64)
    phone, pdf_class, is_final = tables
    if len(tids) and (tids.min() < 1 or tids.max() >= len(phone)):
        raise EsgdError(f"alignment has transition-ids outside 1..{len(phone) - 1}")
    starts = np.r_[True, is_final[tids[:-1]]] if len(tids) else np.zeros(0, dtype=bool)
    return phone[tids], pdf_class[tids], starts


# --------------------------------------------------------------------------------------------------------------
# Event maps (Kaldi's ConstantEventMap, SplitEventMap, TableEventMap)
# --------------------------------------------------------------------------------------------------------------

class Leaf:
    """ConstantEventMap: answers `pdf`."""
    __slots__ = ("pdf",)

    def __init__(self, pdf: int):
        self.pdf = int(pdf)


class Split:
    """SplitEventMap: `yes` if the value of `key` is in `yes_set`, else `no`."""
    __slots__ = ("key", "yes_set", "yes", "no")

    def __init__(self, key: int, yes_set: Iterable[int], yes, no):
        self.key, self.yes_set, self.yes, self.no = int(key), tuple(sorted(set(int(v) for v in yes_set))), yes, no


class Table:
    """TableEventMap: `table[value of key]` (None: no answer)."""
    __slots__ = ("key", "table")

    def __init__(self, key: int, table: list):
        self.key, self.table = int(key), list(table)


def _children(node) -> list:
    if isinstance(node, Split):
        return [node.yes, node.no]
    if isinstance(node, Table):
        return [t for t in node.table if t is not None]
    return []


def _write_node(node, out: list[str], indent: int) -> None:
    pad = " " * indent
    if node is None:
        out.append(pad + "NULL")
    elif isinstance(node, Leaf):
        out.append(f"{pad}CE {node.pdf}")
    elif isinstance(node, Split):
        out.append(f"{pad}SE {node.key} [ {' '.join(map(str, node.yes_set))} ]")
        out.append(pad + "{")
        _write_node(node.yes, out, indent + 2)
        _write_node(node.no, out, indent + 2)
        out.append(pad + "}")
    elif isinstance(node, Table):
        out.append(f"{pad}TE {node.key} {len(node.table)} (")
        for sub in node.table:
            _write_node(sub, out, indent + 2)
        out.append(pad + ")")
    else:
        raise TypeError(f"not an event map node: {node!r}")


class _Tokens:
    def __init__(self, text: str, where: str):
        self.tokens, self.pos, self.where = text.split(), 0, where

    def next(self) -> str:
        if self.pos >= len(self.tokens):
            raise EsgdError(f"{self.where}: tree text ends too early")
        self.pos += 1
        return self.tokens[self.pos - 1]

    def expect(self, token: str) -> None:
        got = self.next()
        if got != token:
            raise EsgdError(f"{self.where}: expected '{token}' in tree text, got '{got}'")

    def int(self) -> int:
        tok = self.next()
        try:
            return int(tok)
        except ValueError:
            raise EsgdError(f"{self.where}: expected an integer in tree text, got '{tok}'") from None

    def int_vector(self) -> list[int]:
        self.expect("[")
        values = []
        while True:
            tok = self.next()
            if tok == "]":
                return values
            try:
                values.append(int(tok))
            except ValueError:
                raise EsgdError(f"{self.where}: expected an integer or ']' in tree text, got '{tok}'") from None

    def node(self):
        tok = self.next()
        if tok == "NULL":
            return None
        if tok == "CE":
            return Leaf(self.int())
        if tok == "SE":
            key = self.int()
            yes_set = self.int_vector()
            self.expect("{")
            yes, no = self.node(), self.node()
            self.expect("}")
            if yes is None or no is None:
                raise EsgdError(f"{self.where}: a split with a NULL branch")
            return Split(key, yes_set, yes, no)
        if tok == "TE":
            key, size = self.int(), self.int()
            self.expect("(")
            table = [self.node() for _ in range(size)]
            self.expect(")")
            return Table(key, table)
        raise EsgdError(f"{self.where}: unknown event map node '{tok}' in tree text")


# --------------------------------------------------------------------------------------------------------------
# The tree
# --------------------------------------------------------------------------------------------------------------

_CE, _SE, _TE = 0, 1, 2


class ContextTree:
    """A context-dependency tree: (phone window, pdf-class) -> pdf id (Kaldi's ContextDependency).

    `num_pdf_classes` maps every phone of the tree to its number of pdf-classes (from the topology);
    `ci_phones` are the context-independent phones (their pdfs never depend on the context)."""

    def __init__(self, root, context_width: int, central_position: int, num_pdf_classes: dict[int, int],
                 ci_phones: Iterable[int] = ()):
        if not 0 <= central_position < context_width:
            raise EsgdError(f"central position {central_position} outside a context window of width "
                            f"{context_width}")
        self.root = root
        self.context_width, self.central_position = int(context_width), int(central_position)
        self.num_pdf_classes = {int(p): int(n) for p, n in sorted(num_pdf_classes.items())}
        self.ci_phones = frozenset(int(p) for p in ci_phones)
        self._compile()

    # ---- structure ----------------------------------------------------------------------------------------
    @property
    def phones(self) -> list[int]:
        return list(self.num_pdf_classes)

    def _col(self, key: int) -> int:
        if key == PDF_CLASS:
            return self.context_width
        if not 0 <= key < self.context_width:
            raise EsgdError(f"tree asks about key {key}, outside a context window of width {self.context_width}")
        return key

    def _compile(self) -> None:
        """Flatten the nodes into arrays for vectorised lookup."""
        nodes = []
        stack = [self.root]
        index = {}
        while stack:
            node = stack.pop()
            if node is None or id(node) in index:
                continue
            index[id(node)] = len(nodes)
            nodes.append(node)
            stack.extend(reversed(_children(node)))
        n = len(nodes)
        self._kind = np.zeros(n, np.int8)
        self._colv = np.zeros(n, np.int64)
        self._answer = np.full(n, -1, np.int64)
        self._yes = np.zeros(n, np.int64)
        self._no = np.zeros(n, np.int64)
        self._row = np.zeros(n, np.int64)
        self._tstart = np.zeros(n, np.int64)
        self._tlen = np.zeros(n, np.int64)
        sets, tables = [], []
        max_value = 0
        leaves = set()
        for i, node in enumerate(nodes):
            if isinstance(node, Leaf):
                self._kind[i], self._answer[i] = _CE, node.pdf
                if node.pdf < 0:
                    raise EsgdError(f"tree has a negative pdf id {node.pdf}")
                leaves.add(node.pdf)
            elif isinstance(node, Split):
                self._kind[i], self._colv[i] = _SE, self._col(node.key)
                self._yes[i], self._no[i] = index[id(node.yes)], index[id(node.no)]
                self._row[i] = len(sets)
                sets.append(node.yes_set)
                if node.yes_set:
                    max_value = max(max_value, max(node.yes_set))
                    if min(node.yes_set) < 0:
                        raise EsgdError(f"tree question on key {node.key} has a negative value")
            elif isinstance(node, Table):
                self._kind[i], self._colv[i] = _TE, self._col(node.key)
                self._tstart[i], self._tlen[i] = sum(len(t) for t in tables), len(node.table)
                tables.append([-1 if t is None else index[id(t)] for t in node.table])
            else:
                raise EsgdError(f"not an event map node: {node!r}")
        self._member = np.zeros((max(len(sets), 1), max_value + 1), dtype=bool)
        for r, s in enumerate(sets):
            self._member[r, list(s)] = True
        self._table = np.array([c for t in tables for c in t], dtype=np.int64)
        self.num_pdfs = max(leaves) + 1 if leaves else 0
        if leaves != set(range(self.num_pdfs)):
            raise EsgdError(f"tree leaves are not numbered 0..{self.num_pdfs - 1} contiguously")
        self._depth = self._max_depth(self.root)
        top = max(self.num_pdf_classes, default=0)
        self._ncls = np.zeros(top + 1, dtype=np.int64)
        for p, c in self.num_pdf_classes.items():
            self._ncls[p] = c

    def _max_depth(self, node) -> int:
        depth, stack = 0, [(node, 1)]
        while stack:
            nd, d = stack.pop()
            depth = max(depth, d)
            stack.extend((c, d + 1) for c in _children(nd))
        return depth

    # ---- lookup -------------------------------------------------------------------------------------------
    def lookup(self, window: Sequence[int], pdf_class: int) -> int | None:
        """The pdf of a phone window (length N; 0 = no phone) and pdf-class, or None where the tree has no answer
        (unknown central phone, pdf-class out of range)."""
        if len(window) != self.context_width:
            raise EsgdError(f"phone window {list(window)} is not of width {self.context_width}")
        center = int(window[self.central_position])
        if not 0 <= pdf_class < self.num_pdf_classes.get(center, 0):
            return None
        event = [int(w) for w in window] + [int(pdf_class)]
        node = self.root
        while True:
            if node is None:
                return None
            if isinstance(node, Leaf):
                return node.pdf
            value = event[self._col(node.key)]
            if isinstance(node, Split):
                node = node.yes if value in node.yes_set else node.no
            else:
                if not 0 <= value < len(node.table):
                    return None
                node = node.table[value]

    def compute(self, phone_seq: Sequence[int], pdf_class: int) -> tuple[bool, int]:
        """kaldi-hmm-gmm's `ContextDependency.compute`: (True, pdf) or (False, -1), so that code written for
        `model.ctx_dep` (align.py, decode/hclg.py) can take a ContextTree."""
        pdf = self.lookup(phone_seq, pdf_class)
        return (False, -1) if pdf is None else (True, pdf)

    def pdf_of(self, window: Sequence[int], pdf_class: int) -> int:
        """As `lookup`, raising EsgdError where there is no answer (what `GmmHmm.pdf_of` answers for a tree)."""
        pdf = self.lookup(window, pdf_class)
        if pdf is None:
            raise EsgdError(f"context tree has no pdf for window {list(window)}, pdf-class {pdf_class}")
        return pdf

    def pdf(self, left: int, center: int, right: int, pdf_class: int) -> int:
        """Triphone convenience: the pdf of (left, center, right, pdf_class)."""
        if (self.context_width, self.central_position) != (3, 1):
            raise EsgdError("pdf(left, center, right, pdf_class) needs a triphone tree (width 3, centre 1)")
        return self.pdf_of([left, center, right], pdf_class)

    def pdf_class_to_pdf(self, phone: int, left: int = 0, right: int = 0) -> list[int]:
        """Pdfs of a triphone's pdf-classes 0..n-1 (per HMM state through the topology's pdf-classes)."""
        if (self.context_width, self.central_position) != (3, 1):
            raise EsgdError("pdf_class_to_pdf(phone, left, right) needs a triphone tree (width 3, centre 1)")
        if phone not in self.num_pdf_classes:
            raise EsgdError(f"phone {phone} is not in the context tree")
        return [self.pdf_of([left, phone, right], c) for c in range(self.num_pdf_classes[phone])]

    def map_events(self, events: np.ndarray) -> np.ndarray:
        """Pdfs of event rows (E, N + 1) = (window..., pdf_class), -1 where the tree has no answer."""
        ev = np.asarray(events, dtype=np.int64).reshape(-1, self.context_width + 1)
        out = np.full(len(ev), -1, dtype=np.int64)
        center, cls = ev[:, self.central_position], ev[:, -1]
        known = (center >= 0) & (center < len(self._ncls))
        ok = np.zeros(len(ev), dtype=bool)
        ok[known] = (cls[known] >= 0) & (cls[known] < self._ncls[center[known]])
        active = np.flatnonzero(ok)
        node = np.zeros(len(active), dtype=np.int64)
        width = self._member.shape[1]
        for _ in range(self._depth + 1):
            if not len(active):
                break
            kind = self._kind[node]
            leaf = kind == _CE
            out[active[leaf]] = self._answer[node[leaf]]
            nxt = np.full(len(active), -1, dtype=np.int64)
            se = kind == _SE
            if se.any():
                n = node[se]
                v = ev[active[se], self._colv[n]]
                inside = (v >= 0) & (v < width)
                in_yes = np.zeros(len(n), dtype=bool)
                in_yes[inside] = self._member[self._row[n[inside]], v[inside]]
                nxt[se] = np.where(v < 0, -1, np.where(in_yes, self._yes[n], self._no[n]))
            te = kind == _TE
            if te.any():
                n = node[te]
                v = ev[active[te], self._colv[n]]
                inside = (v >= 0) & (v < self._tlen[n])
                child = np.full(len(n), -1, dtype=np.int64)
                child[inside] = self._table[self._tstart[n[inside]] + v[inside]]
                nxt[te] = child
            keep = nxt >= 0
            active, node = active[keep], nxt[keep]
        return out

    def map_stats(self, stats: TreeStats) -> np.ndarray:
        """Pdf of every event of `stats` (an error if any has none)."""
        self._check_stats(stats)
        pdfs = self.map_events(stats.events)
        if (pdfs < 0).any():
            bad = stats.events[np.flatnonzero(pdfs < 0)[0]]
            raise EsgdError(f"context tree has no pdf for event {bad.tolist()} of the statistics (do the tree and "
                            f"the statistics use the same phones, context width and context-independent phones?)")
        return pdfs

    def _check_stats(self, stats: TreeStats) -> None:
        if (stats.context_width, stats.central_position) != (self.context_width, self.central_position):
            raise EsgdError(f"tree statistics of context {stats.context_width}/{stats.central_position}, tree of "
                            f"{self.context_width}/{self.central_position}")

    def pdf_stats(self, stats: TreeStats) -> np.ndarray:
        """(num_pdfs, 1 + 2D) summed statistics per pdf: what gmm-init-model makes each pdf's first Gaussian from
        (mean = sum / count, variance = squares / count - mean^2); rows of unseen pdfs are zero."""
        pdfs = self.map_stats(stats)
        out = np.zeros((self.num_pdfs, stats.stats.shape[1]))
        np.add.at(out, pdfs, stats.stats)
        return out

    def objf(self, stats: TreeStats) -> float:
        """Total objective of the statistics clustered by this tree (Kaldi's ObjfGivenMap)."""
        return float(gauss_objf(self.pdf_stats(stats), stats.var_floor).sum())

    # ---- what the transition model and H need ------------------------------------------------------------
    def _context_domain(self) -> np.ndarray:
        return np.array([0] + self.phones, dtype=np.int64)

    def context_classes(self, phone: int) -> list[np.ndarray]:
        """For each window position other than the centre, one representative value per class of values the
        tree cannot tell apart for this central phone (over phones of the tree and 0); [0] for context-independent
        phones and positions never asked about."""
        questions: dict[int, set] = {k: set() for k in range(self.context_width) if k != self.central_position}
        stack = [self.root]
        while stack:
            node = stack.pop()
            if node is None or isinstance(node, Leaf):
                continue
            if node.key == self.central_position:
                if isinstance(node, Split):
                    stack.append(node.yes if phone in node.yes_set else node.no)
                elif 0 <= phone < len(node.table):
                    stack.append(node.table[phone])
                continue
            if isinstance(node, Split):
                if node.key in questions:
                    questions[node.key].add(node.yes_set)
                stack.extend([node.yes, node.no])
            else:
                if node.key in questions:
                    questions[node.key].add(("table", len(node.table)))
                stack.extend(t for t in node.table if t is not None)
        domain = self._context_domain()
        reps = []
        for k in sorted(questions):
            qs = sorted(questions[k], key=str)
            if not qs:
                reps.append(np.array([0], dtype=np.int64))
                continue
            sig = np.zeros((len(domain), len(qs)), dtype=np.int64)
            for j, q in enumerate(qs):
                if q and q[0] == "table":
                    sig[:, j] = np.where(domain < q[1], domain, -1)
                else:
                    sig[:, j] = np.isin(domain, q)
            _, first = np.unique(sig, axis=0, return_index=True)
            reps.append(domain[np.sort(first)])
        return reps

    def context_windows(self, phone: int) -> np.ndarray:
        """(K, N) representative windows of a central phone: every distinct pdf assignment over all contexts
        occurs for at least one of them."""
        reps = self.context_classes(phone)
        others = [k for k in range(self.context_width) if k != self.central_position]
        grids = np.meshgrid(*reps, indexing="ij") if reps else []
        K = int(np.prod([len(r) for r in reps])) if reps else 1
        win = np.zeros((K, self.context_width), dtype=np.int64)
        for k, g in zip(others, grids):
            win[:, k] = g.reshape(-1)
        win[:, self.central_position] = phone
        return win

    def pdf_tuples(self, phone: int) -> np.ndarray:
        """(K, num_pdf_classes(phone)) distinct pdf tuples (pdf per pdf-class) that the phone takes over all
        contexts (phones of the tree and 0 at every context position), sorted."""
        if phone not in self.num_pdf_classes:
            raise EsgdError(f"phone {phone} is not in the context tree")
        win = self.context_windows(phone)
        n = self.num_pdf_classes[phone]
        ev = np.concatenate([np.repeat(win, n, axis=0), np.tile(np.arange(n), len(win))[:, None]], 1)
        pdfs = self.map_events(ev).reshape(len(win), n)
        if (pdfs < 0).any():
            raise EsgdError(f"context tree has no pdf for some context of phone {phone}")
        return np.unique(pdfs, axis=0)

    def all_windows(self, phones: Iterable[int] | None = None) -> np.ndarray:
        """Every window (N columns) whose centre is one of `phones` (default all) and whose other positions are
        phones of the tree or 0: the triples that can occur. Size grows as (#phones + 1)^(N - 1) per phone."""
        centers = np.array(sorted(self.num_pdf_classes if phones is None else phones), dtype=np.int64)
        domain = self._context_domain()
        axes = [domain if k != self.central_position else centers for k in range(self.context_width)]
        grids = np.meshgrid(*axes, indexing="ij")
        return np.stack([g.reshape(-1) for g in grids], 1)

    def pdf_info(self, phones: Iterable[int] | None = None) -> list[list[tuple[int, int]]]:
        """Per pdf, the (phone, pdf_class) pairs that can map to it (Kaldi's GetPdfInfo), over `phones` (default
        all phones of the tree)."""
        info: list[set] = [set() for _ in range(self.num_pdfs)]
        chosen = self.num_pdf_classes if phones is None else [int(p) for p in phones]
        for phone in chosen:
            n = self.num_pdf_classes[phone]
            for row in self.pdf_tuples(phone):
                for c in range(n):
                    info[int(row[c])].add((phone, c))
        return [sorted(s) for s in info]

    def get_pdf_info(self, phones: Sequence[int], num_pdf_classes: Sequence[int]) -> list[list[tuple[int, int]]]:
        """kaldi-hmm-gmm's `ContextDependency.get_pdf_info` (num_pdf_classes indexed by phone; must agree with the
        tree's)."""
        for p in phones:
            if self.num_pdf_classes.get(int(p)) != int(num_pdf_classes[p]):
                raise EsgdError(f"phone {p}: {num_pdf_classes[p]} pdf-classes given, the tree has "
                                f"{self.num_pdf_classes.get(int(p))}")
        return self.pdf_info(phones)

    def transition_tuples(self, hmm_pdf_classes: dict[int, list[tuple[int, int]]]
                          ) -> list[tuple[int, int, int, int]]:
        """Kaldi's TransitionModel tuples (phone, hmm_state, forward_pdf, self_loop_pdf), sorted, given for each
        phone the (forward_pdf_class, self_loop_pdf_class) of its emitting HMM states (`hmm_pdf_classes_of`)."""
        tuples = set()
        for phone, states in hmm_pdf_classes.items():
            for row in self.pdf_tuples(int(phone)):
                for h, (fc, lc) in enumerate(states):
                    tuples.add((int(phone), h, int(row[fc]), int(row[lc])))
        return sorted(tuples)

    # ---- text form ----------------------------------------------------------------------------------------
    def to_text(self) -> str:
        out = [f"ContextDependency {self.context_width} {self.central_position} ToPdf"]
        _write_node(self.root, out, 0)
        out.append("EndContextDependency")
        out.append("EsgdTreeInfo")
        by_count: dict[int, list[int]] = {}
        for p, n in self.num_pdf_classes.items():
            by_count.setdefault(n, []).append(p)
        out.append("NumPdfClasses " + " ".join(f"{n} [ {' '.join(map(str, ps))} ]"
                                               for n, ps in sorted(by_count.items())))
        out.append(f"ContextIndependentPhones [ {' '.join(map(str, sorted(self.ci_phones)))} ]")
        out.append("EndEsgdTreeInfo")
        return "\n".join(out) + "\n"

    @classmethod
    def from_text(cls, text: str, where: str = "tree") -> "ContextTree":
        tok = _Tokens(text, where)
        tok.expect("ContextDependency")
        N, P = tok.int(), tok.int()
        tok.expect("ToPdf")
        root = tok.node()
        tok.expect("EndContextDependency")
        tok.expect("EsgdTreeInfo")
        tok.expect("NumPdfClasses")
        num_pdf_classes = {}
        while True:
            t = tok.next()
            if t == "ContextIndependentPhones":
                break
            try:
                n = int(t)
            except ValueError:
                raise EsgdError(f"{where}: expected a number of pdf-classes, got '{t}'") from None
            for p in tok.int_vector():
                num_pdf_classes[p] = n
        ci = tok.int_vector()
        tok.expect("EndEsgdTreeInfo")
        return cls(root, N, P, num_pdf_classes, ci)

    def save(self, path: str | Path) -> None:
        """Write the text form atomically."""
        atomic_write_text(path, self.to_text())

    @classmethod
    def load(cls, path: str | Path) -> "ContextTree":
        path = Path(path)
        if not path.is_file():
            raise EsgdError(f"{path}: no such tree file")
        return cls.from_text(path.read_text(encoding="utf-8"), str(path))


def hmm_pdf_classes_of(topo, phones: Iterable[int]) -> dict[int, list[tuple[int, int]]]:
    """(forward_pdf_class, self_loop_pdf_class) of each emitting HMM state of each phone, from a kaldi-hmm-gmm
    HmmTopology (for `ContextTree.transition_tuples`)."""
    out = {}
    for phone in phones:
        hmm = topo.topology_for_phone(int(phone))
        out[int(phone)] = [(hmm[h].forward_pdf_class, hmm[h].self_loop_pdf_class) for h in range(len(hmm) - 1)]
    return out


def num_pdf_classes_of(topo) -> dict[int, int]:
    """Phone -> number of pdf-classes of a kaldi-hmm-gmm HmmTopology."""
    counts = topo.get_phone_to_num_pdf_classes()
    return {int(p): int(counts[p]) for p in topo.phones}


# --------------------------------------------------------------------------------------------------------------
# Roots, questions, options
# --------------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Root:
    """One line of roots.int: phones sharing a tree root; `shared`: one root for all pdf-classes; `split`: may be
    split by questions."""

    phones: tuple[int, ...]
    shared: bool = True
    split: bool = True


def read_roots(path: str | Path) -> list[Root]:
    """Kaldi's roots file: `{shared|not-shared} {split|not-split} phone...` per line."""
    path = Path(path)
    if not path.is_file():
        raise EsgdError(f"{path}: no such file")
    roots = []
    for lineno, line in enumerate(path.read_text().splitlines(), 1):
        fields_ = line.split()
        if not fields_:
            continue
        if len(fields_) < 3 or fields_[0] not in ("shared", "not-shared") \
                or fields_[1] not in ("split", "not-split"):
            raise EsgdError(f"{path}:{lineno}: expected '{{shared|not-shared}} {{split|not-split}} <phones>', "
                            f"got '{line}'")
        try:
            phones = tuple(int(x) for x in fields_[2:])
        except ValueError:
            raise EsgdError(f"{path}:{lineno}: phones must be integers: '{line}'") from None
        roots.append(Root(phones, fields_[0] == "shared", fields_[1] == "split"))
    if not roots:
        raise EsgdError(f"{path}: no roots")
    return roots


@dataclass
class Questions:
    """Yes-sets per event key (Kaldi's compiled Questions): keys 0..N-1 are window positions, -1 the pdf-class."""

    sets: dict[int, list[tuple[int, ...]]] = field(default_factory=dict)

    def keys(self) -> list[int]:
        return sorted(k for k, v in self.sets.items() if v)


@dataclass(frozen=True)
class TreeOptions:
    """build-tree options. `num_leaves`: Kaldi's --max-leaves, the target number of leaves (0: no limit);
    `thresh`: minimum log-likelihood gain of a split; `cluster_thresh`: leaves of one root (and pdf-class, with
    `pdf_class_first`) are merged while the cheapest merge costs less than this (negative: the smallest split gain;
    0: no clustering); `pdf_class_first`: separate the pdf-classes of shared roots before any other split."""

    num_leaves: int = 2000
    thresh: float = 300.0
    cluster_thresh: float = -1.0
    pdf_class_first: bool = True

    @classmethod
    def from_args(cls, args: Iterable[str], where: str = "options") -> "TreeOptions":
        """From `--num-leaves=2000`-style options (also --max-leaves, Kaldi's name)."""
        values: dict = {}
        names = {f.name.replace("_", "-"): f for f in fields(cls)}
        for arg in args:
            if not arg.startswith("--") or "=" not in arg:
                raise EsgdError(f"{where}: expected --name=value, got '{arg}'")
            name, value = arg[2:].split("=", 1)
            name = "num-leaves" if name == "max-leaves" else name
            if name not in names:
                raise EsgdError(f"{where}: unknown option --{name} (known: "
                                f"{', '.join('--' + n for n in names)})")
            f = names[name]
            try:
                if f.type in ("bool", bool):
                    if value not in ("true", "false"):
                        raise ValueError
                    values[f.name] = value == "true"
                elif f.type in ("int", int):
                    values[f.name] = int(value)
                else:
                    values[f.name] = float(value)
            except ValueError:
                raise EsgdError(f"{where}: bad value '{value}' for --{name}") from None
        return cls(**values)

    @classmethod
    def from_conf(cls, path: str | Path) -> "TreeOptions":
        """From a Kaldi option file (esgd_asr.option_file): one `--name=value` per line, `#` comments."""
        return cls.from_args(read_option_file(path), str(path))


# --------------------------------------------------------------------------------------------------------------
# Building (build-tree)
# --------------------------------------------------------------------------------------------------------------

@dataclass
class SplitRecord:
    key: int
    yes_set: tuple[int, ...]
    gain: float
    forced: bool  # a pdf-class separation at a shared root (pdf_class_first), made whatever its gain


@dataclass
class BuildReport:
    """Figures of a tree build; objectives are total log-likelihoods of all statistics."""

    frames: float
    objf_roots: float  # one cluster per root (per root and pdf-class for not-shared roots)
    objf_split: float  # after splitting, before clustering
    objf_final: float
    splits: list[SplitRecord]
    num_leaves_split: int
    num_leaves: int
    cluster_thresh: float

    @property
    def split_gain(self) -> float:
        return sum(s.gain for s in self.splits)

    def summary(self) -> str:
        greedy = [s for s in self.splits if not s.forced]
        return (f"{self.num_leaves_split} leaves after {len(greedy)} splits (+{len(self.splits) - len(greedy)} "
                f"pdf-class), like-impr {(self.objf_split - self.objf_roots) / max(self.frames, 1):.4f}/frame over "
                f"{self.frames:.0f} frames; clustering (thresh {self.cluster_thresh:.1f}) -> {self.num_leaves} "
                f"leaves, objf change {(self.objf_final - self.objf_split) / max(self.frames, 1):.4f}/frame")


class _Grow:
    """A node of the tree being grown: a leaf (yes is None) or a split."""
    __slots__ = ("idx", "key", "yes_set", "yes", "no", "leaf_id", "group", "best", "splittable")

    def __init__(self, idx: np.ndarray, leaf_id: int, splittable: bool):
        self.idx, self.leaf_id, self.splittable = idx, leaf_id, splittable
        self.key, self.yes_set, self.yes, self.no, self.group, self.best = None, None, None, None, -1, None


class _Builder:
    def __init__(self, stats: TreeStats, questions: Questions):
        self.N, self.P = stats.context_width, stats.central_position
        self.ev = stats.events.astype(np.int64)
        self.S = stats.stats
        self.floor = stats.var_floor
        self.qsets: dict[int, list[tuple[int, ...]]] = {}
        self.qmat: dict[int, np.ndarray] = {}
        for key in questions.keys():
            if key != PDF_CLASS and not 0 <= key < self.N:
                raise EsgdError(f"questions for key {key}, outside a context window of width {self.N}")
            qs = [tuple(sorted(set(q))) for q in questions.sets[key] if q]
            if not qs:
                continue
            col = self.N if key == PDF_CLASS else key
            width = max(max(max(q) for q in qs), int(self.ev[:, col].max(initial=0))) + 1
            m = np.zeros((len(qs), width))
            for i, q in enumerate(qs):
                m[i, list(q)] = 1.0
            self.qsets[key], self.qmat[key] = qs, m
        self.next_leaf = 0
        self.splits: list[SplitRecord] = []

    def col(self, key: int) -> int:
        return self.N if key == PDF_CLASS else key

    def new_leaf(self, idx: np.ndarray, splittable: bool) -> _Grow:
        g = _Grow(idx, self.next_leaf, splittable)
        self.next_leaf += 1
        return g

    def gains(self, idx: np.ndarray, key: int, qmat: np.ndarray, sub: np.ndarray | None = None
              ) -> np.ndarray | None:
        """Gain of each question (rows of qmat) on `key` for the events idx (whose stats are `sub`, if given);
        None if the key is not recorded for all of them (Kaldi asks only keys defined for every event of a
        node)."""
        v = self.ev[idx, self.col(key)]
        if (v < 0).any():
            return None
        if sub is None:
            sub = self.S[idx]
        total = sub.sum(0)
        width = qmat.shape[1]
        inside = v < width
        per_value = _sum_small(v[inside], width, sub[inside] if not inside.all() else sub)
        num_events = np.bincount(v[inside], minlength=width).astype(np.float64)
        yes = qmat @ per_value
        yes_n = qmat @ num_events
        no = total[None, :] - yes
        g = gauss_objf(yes, self.floor) + gauss_objf(no, self.floor) - gauss_objf(total, self.floor)
        return np.where((yes_n > 0) & (yes_n < len(idx)), g, 0.0)

    def find_best(self, g: _Grow) -> None:
        """Best (gain, key, yes_set) over all keys and questions (Kaldi's FindBestSplit: strict improvement, keys
        in increasing order, questions in their order)."""
        g.best = (0.0, None, None)
        if not g.splittable or len(g.idx) <= 1:
            return
        sub = self.S[g.idx]
        for key in sorted(self.qmat):
            gains = self.gains(g.idx, key, self.qmat[key], sub)
            if gains is None:
                continue
            i = int(np.argmax(gains))
            if gains[i] > g.best[0]:
                g.best = (float(gains[i]), key, self.qsets[key][i])

    def split(self, g: _Grow, key: int, yes_set: tuple[int, ...], gain: float, forced: bool) -> None:
        v = self.ev[g.idx, self.col(key)]
        mask = np.isin(v, yes_set)
        g.key, g.yes_set = key, yes_set
        g.yes = self.new_leaf(g.idx[mask], g.splittable)
        g.no = self.new_leaf(g.idx[~mask], g.splittable)
        g.yes.group = g.no.group = g.group
        g.idx = None
        self.splits.append(SplitRecord(key, yes_set, gain, forced))

    def separate_pdf_classes(self, g: _Grow, classes: frozenset) -> list[_Grow]:
        """Split g until each leaf holds one pdf-class, choosing among the pdf-class questions that divide the
        classes (best gain first); returns the leaves."""
        if len(classes) <= 1:
            return [g]
        cands = [q for q in self.qsets.get(PDF_CLASS, []) if 0 < len(classes & set(q)) < len(classes)]
        if not cands:
            cands = [(min(classes),)]
        gain = 0.0
        choice = cands[0]
        if len(g.idx):
            m = np.zeros((len(cands), max(max(max(q) for q in cands), max(classes),
                                          int(self.ev[g.idx, self.N].max())) + 1))
            for i, q in enumerate(cands):
                m[i, list(q)] = 1.0
            gains = self.gains(g.idx, PDF_CLASS, m)
            i = int(np.argmax(gains))
            choice, gain = cands[i], float(gains[i])
        self.split(g, PDF_CLASS, choice, gain, forced=True)
        yes_classes = classes & set(choice)
        return (self.separate_pdf_classes(g.yes, frozenset(yes_classes))
                + self.separate_pdf_classes(g.no, frozenset(classes - yes_classes)))


def _stub(roots_nodes: list, roots: list[Root], P: int):
    """Kaldi's GetStubMap above the roots: binary splits on the central phone over halves of the root list."""
    if len(roots_nodes) == 1:
        return roots_nodes[0]
    half = len(roots_nodes) // 2
    yes_phones = [p for r in roots[:half] for p in r.phones]
    return ("SE", P, tuple(sorted(yes_phones)), _stub(roots_nodes[:half], roots[:half], P),
            _stub(roots_nodes[half:], roots[half:], P))


def build_tree(stats: TreeStats, roots: list[Root], questions: Questions, num_pdf_classes: dict[int, int],
               opts: TreeOptions = TreeOptions(), ci_phones: Iterable[int] | None = None
               ) -> tuple[ContextTree, BuildReport]:
    """Build a context tree from tree statistics (Kaldi's build-tree; see the module docstring).

    `num_pdf_classes`: phone -> number of pdf-classes (`num_pdf_classes_of(topo)`); `ci_phones` default: the phones
    whose statistics carry no context."""
    if opts.thresh <= 0 and opts.num_leaves <= 0:
        raise EsgdError("tree building needs a positive --thresh or --num-leaves")
    if len(stats) == 0:
        raise EsgdError("tree building: no statistics")
    N, P = stats.context_width, stats.central_position
    root_of: dict[int, int] = {}
    for r, root in enumerate(roots):
        if root.split and not root.shared:
            raise EsgdError(f"roots: 'not-shared split' roots are not supported (Kaldi neither): {root.phones}")
        for p in root.phones:
            if p in root_of:
                raise EsgdError(f"roots: phone {p} is in more than one root")
            if p not in num_pdf_classes:
                raise EsgdError(f"roots: phone {p} has no number of pdf-classes (not in the topology?)")
            root_of[p] = r
    central = stats.events[:, P].astype(np.int64)
    unknown = sorted(set(np.unique(central).tolist()) - set(root_of))
    if unknown:
        raise EsgdError(f"phones {unknown[:5]} appear in the tree statistics but in no root")
    ci = set(stats.context_independent_phones() if ci_phones is None else ci_phones)
    b = _Builder(stats, questions)
    lookup = np.full(max(root_of) + 1, -1, dtype=np.int64)
    for p, r in root_of.items():
        lookup[p] = r
    root_index = lookup[central]
    order = np.argsort(root_index, kind="stable")
    bounds = np.searchsorted(root_index[order], np.arange(len(roots) + 1))

    grown = []  # per root: a _Grow, or ("TE", leaves) for not-shared roots
    start_leaves: list[_Grow] = []
    for r, root in enumerate(roots):
        idx = np.sort(order[bounds[r]:bounds[r + 1]])
        ncls = max(num_pdf_classes[p] for p in root.phones)
        if not root.shared:
            cls = b.ev[idx, N]
            leaves = [b.new_leaf(idx[cls == c], False) for c in range(ncls)]
            grown.append(("TE", leaves))
            start_leaves.extend(leaves)
            continue
        g = b.new_leaf(idx, root.split)
        grown.append(g)
        start_leaves.append(g)
    objf_roots = float(sum(gauss_objf(b.S[lf.idx].sum(0), b.floor) for lf in start_leaves if len(lf.idx)))

    leaves: list[_Grow] = []
    for root, g in zip(roots, grown):
        if isinstance(g, tuple):
            leaves.extend(g[1])
        elif g.splittable and opts.pdf_class_first:
            ncls = max(num_pdf_classes[p] for p in root.phones)
            leaves.extend(b.separate_pdf_classes(g, frozenset(range(ncls))))
        else:
            leaves.append(g)
    for i, lf in enumerate(leaves):
        lf.group = i
    num_leaves = len(leaves)

    # greedy splitting of the best leaf anywhere (SplitDecisionTree)
    heap = []
    for lf in leaves:
        b.find_best(lf)
        if lf.best[0] > 0:
            heapq.heappush(heap, (-lf.best[0], lf.leaf_id, lf))
    smallest = math.inf
    while heap:
        gain = -heap[0][0]
        if gain <= opts.thresh or (opts.num_leaves > 0 and num_leaves >= opts.num_leaves):
            break
        _, _, lf = heapq.heappop(heap)
        _, key, yes_set = lf.best
        b.split(lf, key, yes_set, gain, forced=False)
        smallest = min(smallest, gain)
        num_leaves += 1
        for child in (lf.yes, lf.no):
            b.find_best(child)
            if child.best[0] > 0:
                heapq.heappush(heap, (-child.best[0], child.leaf_id, child))

    final_leaves = []

    def collect(g):
        stack = [g]
        while stack:
            x = stack.pop()
            if isinstance(x, tuple):
                stack.extend(reversed(x[1]))
            elif x.yes is None:
                final_leaves.append(x)
            else:
                stack.extend([x.no, x.yes])

    for g in grown:
        collect(g)
    leaf_stats = np.stack([b.S[lf.idx].sum(0) if len(lf.idx) else np.zeros(b.S.shape[1]) for lf in final_leaves])
    objf_split = float(gauss_objf(leaf_stats, b.floor).sum())

    # bottom-up clustering of leaves within their group (ClusterEventMapRestrictedByMap)
    cluster_thresh = opts.cluster_thresh
    if cluster_thresh < 0:
        cluster_thresh = smallest if smallest < math.inf else 0.0
    rep = np.arange(len(final_leaves))
    if cluster_thresh > 0:
        groups: dict[int, list[int]] = {}
        for i, lf in enumerate(final_leaves):
            if len(lf.idx):
                groups.setdefault(lf.group, []).append(i)
        for members in groups.values():
            _cluster_bottom_up(leaf_stats, members, cluster_thresh, b.floor, rep)
    merged = np.zeros_like(leaf_stats)
    np.add.at(merged, rep, leaf_stats)
    objf_final = float(gauss_objf(merged, b.floor).sum())

    # number leaves (pdf ids) in depth-first order of first appearance
    pdf_of_rep: dict[int, int] = {}
    pdf_of_leaf = {}
    for i, lf in enumerate(final_leaves):
        pdf_of_leaf[id(lf)] = pdf_of_rep.setdefault(int(rep[i]), len(pdf_of_rep))

    def convert(x):
        if isinstance(x, tuple):
            return Table(PDF_CLASS, [convert(lf) for lf in x[1]])
        if x.yes is None:
            return Leaf(pdf_of_leaf[id(x)])
        return Split(x.key, x.yes_set, convert(x.yes), convert(x.no))

    def materialise(s):
        if isinstance(s, tuple) and s and s[0] == "SE":
            return Split(s[1], s[2], materialise(s[3]), materialise(s[4]))
        return convert(s)

    root_node = materialise(_stub(grown, roots, P))
    tree = ContextTree(root_node, N, P, {p: num_pdf_classes[p] for p in root_of}, ci)
    report = BuildReport(stats.num_frames, objf_roots, objf_split, objf_final, b.splits, len(final_leaves),
                         tree.num_pdfs, cluster_thresh)
    return tree, report


def _cluster_bottom_up(leaf_stats: np.ndarray, members: list[int], thresh: float, floor: float,
                       rep: np.ndarray) -> None:
    """Merge the cheapest pair of clusters among `members` while its merge cost is below `thresh` (Kaldi's
    ClusterBottomUp); sets rep[leaf] to the surviving leaf of its cluster."""
    n = len(members)
    if n < 2:
        return
    C = leaf_stats[members].copy()
    objf = gauss_objf(C, floor)
    dist = objf[:, None] + objf[None, :] - gauss_objf(C[:, None, :] + C[None, :, :], floor)
    np.fill_diagonal(dist, np.inf)
    alive = np.ones(n, dtype=bool)
    owner = np.arange(n)
    while True:
        flat = int(np.argmin(dist))
        i, j = divmod(flat, n)
        if not dist[i, j] < thresh:
            break
        i, j = min(i, j), max(i, j)
        C[i] += C[j]
        alive[j] = False
        owner[owner == j] = i
        dist[j, :] = dist[:, j] = np.inf
        objf[i] = gauss_objf(C[i], floor)
        row = objf[i] + objf - gauss_objf(C[i][None, :] + C, floor)
        row[~alive] = np.inf
        row[i] = np.inf
        dist[i, :] = row
        dist[:, i] = row
    for k, m in enumerate(members):
        rep[m] = members[owner[k]]
