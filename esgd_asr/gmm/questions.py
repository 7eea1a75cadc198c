"""Phonetic questions for tree building, as Kaldi's cluster-phones and compile-questions make them.

`cluster_phones` (AutomaticallyObtainQuestions): the phone sets of the lang (phones/sets.int: a base phone with its
position-dependent variants per line) are pooled into one Gaussian each from the central-position tree statistics
of the chosen pdf-classes (default 1, the middle state of 3), then clustered top-down: the cluster whose best
2-way split (k-means on the Gaussian log-likelihood, several seeded random restarts, points moved one at a time
while the objective improves) gains most is split next, down to single sets. Every node of that cluster tree
(leaves and the root included) is a question, and so is every original set.

`compile_questions`: those phone questions plus the lang's extra questions (phones/extra_questions.int), each sorted
and de-duplicated, asked about every window position 0..N-1 (the centre too, which tells apart phones sharing a
root, e.g. word positions), and the pdf-class questions {0}, {0, 1}, ..., {0..M-2} for M the largest number of
pdf-classes.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

import numpy as np

from esgd_asr.errors import EsgdError
from esgd_asr.gmm.tree import PDF_CLASS, Questions, TreeStats, gauss_objf


def read_int_sets(path: str | Path) -> list[list[int]]:
    """Integer sets, one per line (sets.int, extra_questions.int, questions.int); blank lines skipped."""
    path = Path(path)
    if not path.is_file():
        raise EsgdError(f"{path}: no such file")
    sets = []
    for lineno, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            sets.append([int(x) for x in line.split()])
        except ValueError:
            raise EsgdError(f"{path}:{lineno}: expected integers, got '{line}'") from None
    return sets


def write_int_sets(path: str | Path, sets: Iterable[Iterable[int]]) -> None:
    Path(path).write_text("".join(" ".join(map(str, s)) + "\n" for s in sets))


def _two_way_split(points: np.ndarray, floor: float, rng: np.random.Generator, num_tries: int
                   ) -> tuple[float, np.ndarray]:
    """Best 2-way partition of `points` (m, 1 + 2D) found by k-means-like refinement from random starts; returns
    (objective gain over one cluster, boolean assignment)."""
    m = len(points)
    total = gauss_objf(points.sum(0), floor)
    best_objf, best_assign = -np.inf, None
    for _ in range(num_tries):
        assign = rng.integers(0, 2, m).astype(bool)
        if assign.all() or not assign.any():
            assign[rng.integers(m)] ^= True
        for _ in range(10 * m * m + 10):
            A, B = points[assign].sum(0), points[~assign].sum(0)
            src = np.where(assign[:, None], A, B)
            dst = np.where(assign[:, None], B, A)
            gain = (gauss_objf(src - points, floor) + gauss_objf(dst + points, floor)
                    - gauss_objf(src, floor) - gauss_objf(dst, floor))
            size = np.where(assign, assign.sum(), (~assign).sum())
            gain[size <= 1] = -np.inf  # keep both clusters non-empty
            j = int(np.argmax(gain))
            if not gain[j] > 1e-9 * max(1.0, abs(total)):
                break
            assign[j] = ~assign[j]
        objf = gauss_objf(points[assign].sum(0), floor) + gauss_objf(points[~assign].sum(0), floor)
        if objf > best_objf:
            best_objf, best_assign = objf, assign.copy()
    return float(best_objf - total), best_assign


def cluster_phones(stats: TreeStats, phone_sets: list[list[int]], pdf_classes: Iterable[int] = (1,),
                   num_tries: int = 10, seed: int = 0) -> list[list[int]]:
    """Questions from the top-down clustering of phone sets (Kaldi's cluster-phones in "questions" mode): sorted,
    unique, non-empty phone sets."""
    if not phone_sets or any(not s for s in phone_sets):
        raise EsgdError("cluster_phones: empty list of phone sets, or an empty set")
    flat = [p for s in phone_sets for p in s]
    if len(flat) != len(set(flat)):
        raise EsgdError("cluster_phones: a phone is in more than one phone set")
    P = stats.central_position
    keep = np.isin(stats.events[:, -1], list(pdf_classes))
    central = stats.events[keep, P].astype(np.int64)
    sub = stats.stats[keep]
    width = stats.stats.shape[1]
    top = max(max(flat), int(central.max(initial=0))) + 1
    per_phone = np.zeros((top, width))
    np.add.at(per_phone, central, sub)
    points = np.stack([per_phone[list(s)].sum(0) for s in phone_sets])
    rng = np.random.default_rng(seed)

    nodes: list[np.ndarray] = [np.arange(len(phone_sets))]  # members (indices of phone sets) of each cluster node
    heap: list[tuple[float, int, np.ndarray]] = []

    def consider(members: np.ndarray):
        if len(members) < 2:
            return
        gain, assign = _two_way_split(points[members], stats.var_floor, rng, num_tries)
        if gain > 0:
            heap.append((gain, len(heap), members[assign], members[~assign]))

    consider(nodes[0])
    while heap:
        heap.sort(key=lambda h: (-h[0], h[1]))
        _, _, left, right = heap.pop(0)
        nodes.extend([left, right])
        consider(left)
        consider(right)
    sets = {tuple(sorted(p for i in members for p in phone_sets[i])) for members in nodes}
    sets |= {tuple(sorted(s)) for s in phone_sets}
    return [list(s) for s in sorted(sets) if s]


def compile_questions(phone_questions: Iterable[Iterable[int]], context_width: int, max_num_pdf_classes: int
                      ) -> Questions:
    """Kaldi's compile-questions: the phone questions for every window position, pdf-class prefix questions."""
    qs = sorted({tuple(sorted(set(int(p) for p in q))) for q in phone_questions if q})
    if not qs:
        raise EsgdError("compile_questions: no phone questions")
    sets = {k: list(qs) for k in range(context_width)}
    sets[PDF_CLASS] = [tuple(range(i + 1)) for i in range(max_num_pdf_classes - 1)]
    return Questions(sets)


def lang_questions(stats: TreeStats, lang_dir: str | Path, max_num_pdf_classes: int,
                   pdf_classes: Iterable[int] = (1,), seed: int = 0) -> tuple[list[list[int]], Questions]:
    """steps/train_deltas.sh's question stage on a lang dir: cluster phones/sets.int, append
    phones/extra_questions.int, compile. Returns (questions.int lines, compiled questions)."""
    lang_dir = Path(lang_dir)
    phone_sets = read_int_sets(lang_dir / "phones/sets.int")
    extra_path = lang_dir / "phones/extra_questions.int"
    extra = read_int_sets(extra_path) if extra_path.is_file() else []
    lines = cluster_phones(stats, phone_sets, pdf_classes, seed=seed) + extra
    return lines, compile_questions(lines, stats.context_width, max_num_pdf_classes)
