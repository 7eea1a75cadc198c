"""Kaldi lattices in text form: `LatticeArrays` (arcs with graph and acoustic costs), the text a decoding job
writes (`lattice_text`) and its reader (`parse_lattice_text`: a compiled reader, with a line-by-line Python parser
for what it leaves and for naming a malformed lattice)."""
from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

from esgd_asr.errors import EsgdError
from esgd_asr.gmm.fst_arrays import num_states_of, split_rows, start_state_of


@dataclass
class LatticeArrays:
    """A Kaldi lattice (LatticeWeight = graph cost, acoustic cost) as arrays; finals carry both costs too."""

    src: np.ndarray
    dst: np.ndarray
    ilabel: np.ndarray
    olabel: np.ndarray
    graph: np.ndarray
    acoustic: np.ndarray
    final_state: np.ndarray
    final_graph: np.ndarray
    final_acoustic: np.ndarray
    start: int
    num_states: int


def lattice_text(lat: LatticeArrays, ac_scale: float = 1.0) -> str:
    """Kaldi's text form of a lattice, acoustic costs multiplied by `ac_scale`, the start state's arcs first;
    empty for a lattice without states."""
    if lat.start < 0:
        return ""
    order = np.argsort(lat.src != lat.start, kind="stable")
    arcs = [f"{s} {d} {i} {o} {g:.7g},{a:.7g}" for s, d, i, o, g, a in zip(
        lat.src[order].tolist(), lat.dst[order].tolist(), lat.ilabel[order].tolist(), lat.olabel[order].tolist(),
        lat.graph[order].tolist(), (lat.acoustic[order] * ac_scale).tolist())]
    finals = [f"{s} {g:.7g},{a:.7g}" for s, g, a in zip(
        lat.final_state.tolist(), lat.final_graph.tolist(), (lat.final_acoustic * ac_scale).tolist())]
    return "\n".join(arcs + finals) + "\n"


def parse_lattice_text(text: str | bytes, where: str) -> LatticeArrays:
    """A lattice from OpenFst / Kaldi text form, weights written `graph,acoustic` (str, or UTF-8 / ASCII bytes)."""
    data = text if isinstance(text, bytes) else text.encode()
    parsed = _lattice_numbers(np.frombuffer(data, np.uint8), _POW10)
    if parsed is not None:
        arcs, arc_weights, finals, final_weights, start = parsed
        return LatticeArrays(arcs[:, 0].copy(), arcs[:, 1].copy(), arcs[:, 2].copy(), arcs[:, 3].copy(),
                             arc_weights[:, 0].copy(), arc_weights[:, 1].copy(), finals, final_weights[:, 0].copy(),
                             final_weights[:, 1].copy(), start, num_states_of(arcs[:, :2], finals))
    return _parse_lattice_rows(data.decode(errors="replace"), where)


def _parse_lattice_rows(text: str, where: str) -> LatticeArrays:
    """parse_lattice_text line by line in Python: numbers _lattice_numbers leaves to float() (inf, nan, long
    mantissas), and the error naming a malformed lattice."""
    arcs, finals = split_rows(text, where)
    try:
        a = np.array([r[:4] + r[4].split(",") if len(r) == 5 else r + ["0", "0"] for r in arcs],
                     dtype=object).reshape(-1, 6)
        f = np.array([[r[0]] + r[1].split(",") if len(r) == 2 else r + ["0", "0"] for r in finals],
                     dtype=object).reshape(-1, 3)
        src, dst = a[:, 0].astype(np.int64), a[:, 1].astype(np.int64)
        final_state = f[:, 0].astype(np.int64)
        return LatticeArrays(src, dst, a[:, 2].astype(np.int64), a[:, 3].astype(np.int64),
                             a[:, 4].astype(np.float64), a[:, 5].astype(np.float64), final_state,
                             f[:, 1].astype(np.float64), f[:, 2].astype(np.float64), start_state_of(text),
                             num_states_of(src, dst, final_state))
    except (ValueError, IndexError):
        raise EsgdError(f"{where}: malformed lattice text") from None


_POW10 = np.array([10.0 ** k for k in range(23)])  # exact in float64
_SPACE, _TAB, _CR, _NEWLINE, _COMMA = 32, 9, 13, 10, 44


@numba.njit(cache=True)
def _number(buf, i, pow10):
    """The decimal number at buf[i:] -> (value, is an integer, index after it, ok). Only values that one exact
    multiplication or division makes (at most 15 digits, a decimal exponent within +-22) are ok, so they equal
    Python's float() bit for bit; anything else (inf, nan, long mantissas) is left to the Python parser."""
    n, negative = len(buf), False
    if i < n and (buf[i] == 45 or buf[i] == 43):  # - +
        negative = buf[i] == 45
        i += 1
    mantissa, digits, fraction, dot, exponent, exp_sign, exp_digits = 0, 0, 0, False, 0, 1, 0
    while i < n:
        c = buf[i]
        if 48 <= c <= 57:
            mantissa = mantissa * 10 + (c - 48)
            digits += 1
            fraction += dot
        elif c == 46 and not dot:  # .
            dot = True
        else:
            break
        i += 1
    if digits == 0 or digits > 15:
        return 0.0, False, i, False
    is_int = not dot
    if i < n and (buf[i] == 101 or buf[i] == 69):  # e E
        is_int = False
        i += 1
        if i < n and (buf[i] == 45 or buf[i] == 43):
            exp_sign = -1 if buf[i] == 45 else 1
            i += 1
        while i < n and 48 <= buf[i] <= 57 and exp_digits < 4:
            exponent = exponent * 10 + (buf[i] - 48)
            exp_digits += 1
            i += 1
        if exp_digits == 0:
            return 0.0, False, i, False
    scale = exp_sign * exponent - fraction
    if mantissa == 0:
        value = 0.0
    elif 0 <= scale <= 22:
        value = mantissa * pow10[scale]
    elif -22 <= scale < 0:
        value = mantissa / pow10[-scale]
    else:
        return 0.0, False, i, False
    return (-value if negative else value), is_int, i, True


@numba.njit(cache=True)
def _lattice_numbers(buf, pow10):
    """Arcs (n, 4) int64, their (graph, acoustic) costs (n, 2), final states, their costs (m, 2) and the start
    state of a lattice in text form, or None when a line is not one of `src dst ilabel olabel [g,a]` and
    `state [g,a]` with numbers _number takes (the caller then parses it in Python, which names the error)."""
    lines = 1
    for c in buf:
        lines += c == _NEWLINE
    arcs = np.empty((lines, 4), np.int64)
    arc_weights = np.zeros((lines, 2))
    finals = np.empty(lines, np.int64)
    final_weights = np.zeros((lines, 2))
    values = np.empty(6)
    field_of = np.empty(6, np.int64)
    integer = np.empty(6, np.bool_)
    n, i, num_arcs, num_finals, start = len(buf), 0, 0, 0, -1
    while i < n:
        fields, count = 0, 0
        while i < n and buf[i] != _NEWLINE:
            if buf[i] == _SPACE or buf[i] == _TAB or buf[i] == _CR:
                i += 1
                continue
            while True:  # one field: a number, or two joined by a comma
                value, is_int, i, ok = _number(buf, i, pow10)
                if not ok or count == 6:
                    return None
                values[count], field_of[count], integer[count] = value, fields, is_int
                count += 1
                if i < n and buf[i] == _COMMA:
                    i += 1
                    continue
                break
            if i < n and not (buf[i] == _SPACE or buf[i] == _TAB or buf[i] == _CR or buf[i] == _NEWLINE):
                return None
            fields += 1
        i += 1
        if fields == 0:
            continue
        if fields >= 4:
            if not ((fields == 4 and count == 4) or (fields == 5 and count == 6 and field_of[4] == 4
                                                      and field_of[5] == 4)):
                return None
            for k in range(4):
                if not integer[k]:
                    return None
                arcs[num_arcs, k] = int(values[k])
            if fields == 5:
                arc_weights[num_arcs, 0], arc_weights[num_arcs, 1] = values[4], values[5]
            if start < 0:
                start = arcs[num_arcs, 0]
            num_arcs += 1
        elif fields <= 2:
            if not ((fields == 1 and count == 1) or (fields == 2 and count == 3 and field_of[1] == 1
                                                     and field_of[2] == 1)):
                return None
            if not integer[0]:
                return None
            finals[num_finals] = int(values[0])
            if fields == 2:
                final_weights[num_finals, 0], final_weights[num_finals, 1] = values[1], values[2]
            if start < 0:
                start = finals[num_finals]
            num_finals += 1
        else:
            return None
    return arcs[:num_arcs], arc_weights[:num_arcs], finals[:num_finals], final_weights[:num_finals], start

