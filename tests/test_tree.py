"""Decision-tree state tying: tree statistics, questions, tree building, the tree object."""
import math
from pathlib import Path

import numpy as np
import pytest

from esgd_asr.errors import EsgdError
from esgd_asr.gmm.questions import cluster_phones, compile_questions, lang_questions, write_int_sets
from esgd_asr.gmm.tree import (ABSENT, ContextTree, Root, TreeOptions, TreeStats, TreeStatsAccumulator,
                               accumulate_tree_stats, alignment_to_phone_states, build_tree, gauss_objf,
                               hmm_pdf_classes_of, num_pdf_classes_of, read_roots, transition_id_tables)

REPO = Path(__file__).resolve().parents[1]
SIL, A, B, C, D, E = 1, 2, 3, 4, 5, 6
NCLS = {SIL: 5, A: 3, B: 3, C: 3, D: 3, E: 3}
DIM = 4
SHIFT = 4.0


def synth_corpus(seed=0, num_utts=60):
    """Utterances (feats, phones, pdf_classes, phone_starts): SIL, 8 phones, SIL. Every (phone, pdf-class) has its
    own mean; B and C are acoustically close; A is shifted by SHIFT in dimension 0 when its left phone is B or C."""
    rng = np.random.default_rng(seed)
    mu = {p: rng.normal(0, 3, DIM) for p in NCLS}
    mu[C] = mu[B] + 0.3
    utts = []
    for _ in range(num_utts):
        seq = [SIL] + list(rng.choice([A, A, B, C, D, E], 8)) + [SIL]
        phones, classes, starts, feats = [], [], [], []
        for j, p in enumerate(seq):
            left = seq[j - 1] if j > 0 else 0
            for c in range(NCLS[p]):
                n = int(rng.integers(2, 5))
                m = mu[p] + np.array([0.0, 2.0 * c, 0.0, 0.0])
                if p == A and left in (B, C):
                    m = m + np.array([SHIFT, 0.0, 0.0, 0.0])
                feats.append(m + rng.normal(0, 1, (n, DIM)))
                phones += [p] * n
                classes += [c] * n
                starts += [c == 0] + [False] * (n - 1)
        utts.append((np.concatenate(feats), np.array(phones), np.array(classes), np.array(starts)))
    return utts


@pytest.fixture(scope="module")
def corpus():
    utts = synth_corpus()
    stats = accumulate_tree_stats(utts, ci_phones=[SIL])
    phone_questions = cluster_phones(stats, [[p] for p in NCLS])
    questions = compile_questions(phone_questions, 3, max(NCLS.values()))
    roots = [Root((p,)) for p in NCLS]
    return utts, stats, phone_questions, questions, roots


def build(corpus, **kw):
    _, stats, _, questions, roots = corpus
    return build_tree(stats, roots, questions, NCLS, TreeOptions(**kw))


def all_events(tree, extra_context=()):
    domain = [0] + tree.phones + list(extra_context)
    rows = [(l, c, r, k) for c in tree.phones for l in domain for r in domain for k in range(NCLS[c])]
    return np.array(rows)


# ---- statistics ----------------------------------------------------------------------------------------------

def test_stats_match_direct_per_frame_computation():
    rng = np.random.default_rng(1)
    utts = []
    for _ in range(5):
        # includes two adjacent instances of one phone (told apart by phone_starts) and CI phones inside
        phones = np.array([SIL] * 3 + [A] * 4 + [A] * 3 + [B] * 5 + [SIL] * 2 + [C] * 3)
        starts = np.zeros(len(phones), dtype=bool)
        starts[[0, 3, 7, 10, 15, 17]] = True
        classes = np.concatenate([[0, 1, 2], [0, 0, 1, 2], [0, 1, 2], [0, 1, 1, 1, 2], [0, 4], [0, 1, 2]])
        utts.append((rng.normal(size=(len(phones), 3)), phones, classes, starts))
    acc = TreeStatsAccumulator(ci_phones=[SIL], chunk_frames=25)  # several reductions merged
    for u in utts:
        acc.add(*u)
    stats = acc.result()

    direct = {}
    for feats, phones, classes, starts in utts:
        inst = np.cumsum(starts) - 1
        inst_phone = [phones[t] for t in range(len(phones)) if starts[t]]
        for t in range(len(phones)):
            j = inst[t]
            left = inst_phone[j - 1] if j > 0 else 0
            right = inst_phone[j + 1] if j + 1 < len(inst_phone) else 0
            if phones[t] == SIL:
                left = right = ABSENT
            key = (left, int(phones[t]), right, int(classes[t]))
            n, s, q = direct.get(key, (0.0, 0.0, 0.0))
            direct[key] = (n + 1, s + feats[t], q + feats[t] ** 2)
    assert set(stats.to_dict()) == set(direct)
    assert (A, A, B, 0) in stats and (SIL, A, A, 1) in stats and (ABSENT, SIL, ABSENT, 4) in stats
    for key, (n, s, q) in direct.items():
        cn, cs, cq = stats[key]
        assert cn == n
        np.testing.assert_allclose(cs, s)
        np.testing.assert_allclose(cq, q)
    # summing accumulations (sum-tree-stats) equals accumulating everything at once
    half = accumulate_tree_stats(utts[:2], [SIL]) + accumulate_tree_stats(utts[2:], [SIL])
    np.testing.assert_array_equal(half.events, stats.events)
    np.testing.assert_allclose(half.stats, stats.stats)


def test_stats_save_load_and_errors(tmp_path):
    stats = accumulate_tree_stats(synth_corpus(num_utts=3), [SIL])
    stats.save(tmp_path / "treeacc.npz")
    back = TreeStats.load(tmp_path / "treeacc.npz")
    np.testing.assert_array_equal(back.events, stats.events)
    np.testing.assert_array_equal(back.stats, stats.stats)
    with pytest.raises(EsgdError, match="no such tree statistics"):
        TreeStats.load(tmp_path / "missing.npz")
    with pytest.raises(EsgdError, match="differ"):
        accumulate_tree_stats([(np.zeros((3, 2)), np.array([1, 1]), np.array([0, 0, 0]))])


def test_objective_is_loglike_under_ml_gaussian():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(50, 3)) * [1.0, 2.0, 0.5] + 1.0
    stats = np.concatenate([[len(x)], x.sum(0), (x * x).sum(0)])
    mean, var = x.mean(0), x.var(0)
    loglike = (-0.5 * ((x - mean) ** 2 / var + np.log(2 * np.pi * var))).sum()
    assert gauss_objf(stats, 1e-6) == pytest.approx(loglike, rel=1e-10)
    # the variance floor bounds the objective of degenerate clusters; empty clusters score 0
    one = np.concatenate([[1.0], x[0], x[0] ** 2])
    assert gauss_objf(one, 0.01) == pytest.approx(-0.5 * 3 * (math.log(0.01) + math.log(2 * math.pi)))
    assert gauss_objf(np.zeros(7), 0.01) == 0.0


# ---- questions -----------------------------------------------------------------------------------------------

def test_questions_put_acoustically_similar_phone_sets_together():
    rng = np.random.default_rng(3)
    sets = [[1], [2, 3], [4, 5], [6, 7], [8, 9], [10, 11]]
    centre = {0: rng.normal(0, 4, DIM), 1: rng.normal(0, 4, DIM), 2: rng.normal(0, 4, DIM),
              4: rng.normal(0, 4, DIM), 5: rng.normal(0, 4, DIM)}
    centre[3] = centre[2] + 0.2  # sets [4, 5] and [6, 7] sound alike
    events, rows = [], []
    for i, s in enumerate(sets):
        for p in s:
            x = centre[i] + rng.normal(0, 1, (40, DIM))
            for cls in (0, 1, 2):  # only class 1 is used (cluster-phones' default)
                xc = x if cls == 1 else x + 50 * rng.normal(size=DIM)
                events.append((ABSENT, p, ABSENT, cls))
                rows.append(np.concatenate([[len(xc)], xc.sum(0), (xc * xc).sum(0)]))
    stats = TreeStats(np.array(events), np.array(rows))
    qs = cluster_phones(stats, sets)
    assert [4, 5, 6, 7] in qs
    assert all(s in qs for s in sets) and list(range(1, 12)) in qs
    for q in qs:  # [4, 5] and [6, 7] are never separated except into themselves
        assert (4 in q) == (6 in q) or q in ([4, 5], [6, 7])
        assert all((p in q) == (s[0] in q) for s in sets for p in s)  # sets stay whole
    assert qs == sorted(qs) and len({tuple(q) for q in qs}) == len(qs)
    compiled = compile_questions(qs + [[4, 5]], 3, 5)
    assert compiled.keys() == [-1, 0, 1, 2]
    assert compiled.sets[-1] == [(0,), (0, 1), (0, 1, 2), (0, 1, 2, 3)]
    assert len(compiled.sets[0]) == len(qs)  # duplicates removed


def test_synthetic_questions_contain_the_context_set(corpus):
    _, _, phone_questions, _, _ = corpus
    assert [B, C] in phone_questions


# ---- building ------------------------------------------------------------------------------------------------

def test_first_split_is_the_true_context_question_and_pdfs_follow_it(corpus):
    tree, report = build(corpus, num_leaves=200, thresh=50.0, cluster_thresh=0.0)
    greedy = [s for s in report.splits if not s.forced]
    assert greedy, "no context split"
    first = greedy[0]
    assert first.key == 0  # the left phone
    seen_left = {int(v) for v in corpus[1].events[corpus[1].events[:, 1] == A, 0]}
    assert {v for v in seen_left if v in first.yes_set} == {B, C} & seen_left
    # A's pdfs depend on exactly "left in {B, C}", per state; other phones have one pdf per state
    domain = [0] + tree.phones
    for state in range(3):
        yes = {tree.pdf(l, A, r, state) for l in (B, C) for r in domain}
        no = {tree.pdf(l, A, r, state) for l in domain if l not in (B, C) for r in domain}
        assert len(yes) == 1 and len(no) == 1 and yes != no
    assert len(tree.pdf_tuples(A)) == 2
    for p in (B, C, D, E):
        assert len(tree.pdf_tuples(p)) == 1
    assert tree.num_pdfs == 5 + 6 + 4 * 3  # silence 5, A 6, four others 3 each


def test_total_gain_is_sum_of_split_gains(corpus):
    _, stats, _, _, _ = corpus
    tree, report = build(corpus, num_leaves=40, thresh=0.0, cluster_thresh=0.0)
    assert report.objf_split - report.objf_roots == pytest.approx(report.split_gain, rel=1e-9)
    assert report.objf_final == pytest.approx(report.objf_split, rel=1e-12)
    assert tree.objf(stats) == pytest.approx(report.objf_final, rel=1e-9)
    assert all(s.gain >= 0 for s in report.splits)
    # pooled per root == objective under the monophone-like map
    assert report.objf_roots <= report.objf_split <= stats.objf() + 1e-6


def test_likelihood_never_decreases_and_num_leaves_is_respected(corpus):
    previous = -np.inf
    for target in range(23, 60, 6):
        tree, report = build(corpus, num_leaves=target, thresh=0.0, cluster_thresh=0.0)
        assert tree.num_pdfs == target == report.num_leaves_split
        assert report.objf_split >= previous - 1e-6
        previous = report.objf_split
        clustered, rep2 = build(corpus, num_leaves=target, thresh=0.0, cluster_thresh=-1.0)
        assert clustered.num_pdfs <= target and rep2.objf_final <= rep2.objf_split + 1e-6
    # a threshold stops splitting before the target
    tree, report = build(corpus, num_leaves=1000, thresh=50.0, cluster_thresh=0.0)
    assert tree.num_pdfs < 1000 and all(s.gain > 50.0 for s in report.splits if not s.forced)


def test_clustering_merges_weak_leaves_and_keeps_the_real_split(corpus):
    _, stats, _, _, _ = corpus
    big, big_report = build(corpus, num_leaves=70, thresh=0.0, cluster_thresh=0.0)
    tree, report = build(corpus, num_leaves=70, thresh=0.0, cluster_thresh=120.0)
    merges = big.num_pdfs - tree.num_pdfs
    assert merges > 0
    assert 0 <= report.objf_split - report.objf_final < merges * 120.0
    assert tree.objf(stats) == pytest.approx(report.objf_final, rel=1e-9)
    for state in range(3):  # the true context effect survives clustering
        assert tree.pdf(B, A, D, state) != tree.pdf(D, A, D, state)
        assert tree.pdf(B, A, D, state) == tree.pdf(C, A, E, state)
    # clustering stays within root and pdf-class: no pdf is shared by two phones or two states
    for pdf, pairs in enumerate(tree.pdf_info()):
        assert len(pairs) == 1, (pdf, pairs)


def test_unseen_contexts_get_valid_pdfs(corpus):
    tree, _ = build(corpus, num_leaves=60, thresh=0.0, cluster_thresh=0.0)
    events = all_events(tree, extra_context=[77])  # 77: a phone the tree has never heard of
    pdfs = tree.map_events(events)
    assert (pdfs >= 0).all() and (pdfs < tree.num_pdfs).all()
    for row, pdf in zip(events[::97], pdfs[::97]):
        assert tree.lookup(row[:3].tolist(), int(row[3])) == pdf
        assert tree.compute(phone_seq=row[:3].tolist(), pdf_class=int(row[3])) == (True, pdf)
    assert set(pdfs.tolist()) == set(range(tree.num_pdfs))
    # undefined: unknown centre phone, pdf-class out of range
    assert tree.map_events(np.array([[0, 77, 0, 0], [0, A, 0, 3], [0, SIL, 0, 5]])).tolist() == [-1, -1, -1]
    assert tree.lookup([0, 77, 0], 0) is None and tree.compute(phone_seq=[0, 77, 0], pdf_class=0) == (False, -1)
    with pytest.raises(EsgdError, match="no pdf"):
        tree.pdf_of([0, A, 0], 3)


def test_context_independent_phones_get_one_pdf_per_state(corpus):
    tree, _ = build(corpus, num_leaves=200, thresh=0.0, cluster_thresh=0.0)  # split as far as possible
    assert tree.ci_phones == {SIL}
    domain = [0] + tree.phones
    per_state = [{tree.pdf(l, SIL, r, s) for l in domain for r in domain} for s in range(5)]
    assert all(len(p) == 1 for p in per_state)
    assert len(set.union(*per_state)) == 5
    assert tree.pdf_tuples(SIL).shape == (1, 5)
    assert len(tree.context_windows(SIL)) == 1


def test_save_load_round_trip(corpus, tmp_path):
    tree, _ = build(corpus, num_leaves=50, thresh=0.0, cluster_thresh=-1.0)
    tree.save(tmp_path / "tree")
    text = (tmp_path / "tree").read_text()
    assert text.startswith("ContextDependency 3 1 ToPdf") and "EndContextDependency" in text
    back = ContextTree.load(tmp_path / "tree")
    assert back.to_text() == text
    assert (back.num_pdfs, back.ci_phones, back.num_pdf_classes) == (tree.num_pdfs, tree.ci_phones,
                                                                      tree.num_pdf_classes)
    events = all_events(tree)
    np.testing.assert_array_equal(back.map_events(events), tree.map_events(events))
    (tmp_path / "bad").write_text(text.replace("EndContextDependency", "", 1))
    with pytest.raises(EsgdError, match="bad"):
        ContextTree.load(tmp_path / "bad")
    with pytest.raises(EsgdError, match="no such tree file"):
        ContextTree.load(tmp_path / "missing")


def test_pdf_info_and_transition_tuples(corpus):
    tree, _ = build(corpus, num_leaves=200, thresh=50.0, cluster_thresh=0.0)
    info = tree.pdf_info()
    assert len(info) == tree.num_pdfs and all(info)
    assert tree.get_pdf_info(tree.phones, [0] + [NCLS[p] for p in sorted(NCLS)]) == info
    assert tree.pdf_class_to_pdf(A, B, D) == [tree.pdf(B, A, D, s) for s in range(3)]
    hmm = {p: [(s, s) for s in range(n)] for p, n in NCLS.items()}
    tuples = tree.transition_tuples(hmm)
    assert tuples == sorted(set(tuples))
    assert len([t for t in tuples if t[0] == A]) == 6 and len([t for t in tuples if t[0] == SIL]) == 5
    assert {t[2] for t in tuples} == set(range(tree.num_pdfs))
    # enumerating every triple agrees with the per-phone pdf tuples
    win = tree.all_windows([A])
    pdfs = np.stack([tree.map_events(np.c_[win, np.full(len(win), s)]) for s in range(3)], 1)
    np.testing.assert_array_equal(np.unique(pdfs, axis=0), tree.pdf_tuples(A))


def test_greedy_without_forced_pdf_class_split_is_kaldi_plain(corpus):
    tree, report = build(corpus, num_leaves=30, thresh=0.0, cluster_thresh=0.0, pdf_class_first=False)
    assert not any(s.forced for s in report.splits) and tree.num_pdfs == 30
    assert report.splits[0].key == -1  # the biggest gain is between HMM states, as in Kaldi's trees


def test_roots_file_and_not_shared_roots(corpus, tmp_path):
    _, stats, _, questions, _ = corpus
    (tmp_path / "roots.int").write_text("not-shared not-split 1\nshared split 2\nshared split 3 4\n"
                                        "shared not-split 5 6\n")
    roots = read_roots(tmp_path / "roots.int")
    assert roots[0] == Root((1,), False, False) and roots[3] == Root((5, 6), True, False)
    tree, report = build_tree(stats, roots, questions, NCLS, TreeOptions(num_leaves=100, thresh=50.0))
    domain = [0] + tree.phones
    assert len({tree.pdf(l, SIL, r, s) for l in domain for r in domain for s in range(5)}) == 5
    assert len({tree.pdf(l, p, r, s) for p in (D, E) for l in domain for r in domain for s in range(3)}) == 1
    root_of = {SIL: 0, A: 1, B: 2, C: 2, D: 3, E: 3}
    for pairs in tree.pdf_info():  # a pdf never spans two roots
        assert len({root_of[p] for p, _ in pairs}) == 1
    assert tree.pdf(D, B, E, 1) in {tree.pdf(l, C, r, 1) for l in domain for r in domain} or \
        any(s.key == 1 and not s.forced for s in report.splits)  # B, C share a root: told apart by key 1 only
    (tmp_path / "bad.int").write_text("shared 2 3\n")
    with pytest.raises(EsgdError, match="bad.int:1"):
        read_roots(tmp_path / "bad.int")
    with pytest.raises(EsgdError, match="in no root"):
        build_tree(stats, [Root((A,))], questions, NCLS)


def test_lang_questions_and_conf(corpus, tmp_path):
    _, stats, _, _, _ = corpus
    (tmp_path / "phones").mkdir()
    write_int_sets(tmp_path / "phones/sets.int", [[p] for p in NCLS])
    write_int_sets(tmp_path / "phones/extra_questions.int", [[A, B, C, D, E], [SIL]])
    lines, compiled = lang_questions(stats, tmp_path, 5)
    assert lines[-2:] == [[A, B, C, D, E], [SIL]]
    assert (A, B, C, D, E) in compiled.sets[0]
    opts = TreeOptions.from_conf(REPO / "conf/tree.conf")
    assert opts.num_leaves == 2000 and opts.thresh > 0
    assert TreeOptions.from_args(["--max-leaves=7", "--pdf-class-first=false"]) == \
        TreeOptions(num_leaves=7, pdf_class_first=False)
    with pytest.raises(EsgdError, match="unknown option --leaves"):
        TreeOptions.from_args(["--leaves=3"])


def test_transition_id_alignment_to_phone_states():
    import kaldi_hmm_gmm as khg

    from esgd_asr.graph.lang import hmm_topology
    from esgd_asr.gmm.model import TransitionInfo

    topo = khg.HmmTopology()
    topo.read(hmm_topology([A, B], [SIL]))
    ctx = khg.monophone_context_dependency_shared(phone_classes=[[SIL], [A], [B]],
                                                  phone2num_pdf_classes=topo.get_phone_to_num_pdf_classes())
    info = TransitionInfo.of(khg.TransitionModel(ctx_dep=ctx, hmm_topo=topo))
    assert num_pdf_classes_of(topo) == {SIL: 5, A: 3, B: 3}
    assert hmm_pdf_classes_of(topo, [A])[A] == [(0, 0), (1, 1), (2, 2)]

    def tid(phone, state, dest):
        for t in range(1, len(info.tstate)):
            s = int(info.tstate[t])
            if info.tuples[s - 1][:2] == (phone, state):
                dests = [d for d, _ in topo.topology_for_phone(phone)[state].transitions]
                return int(info.first_tid[s]) + dests.index(dest)
        raise AssertionError

    speech = lambda p: [tid(p, 0, 0), tid(p, 0, 1), tid(p, 1, 2), tid(p, 2, 2), tid(p, 2, 3)]  # noqa: E731
    sil = [tid(SIL, 0, 0), tid(SIL, 0, 1), tid(SIL, 1, 4), tid(SIL, 4, 5)]
    ali = np.array(sil + speech(A) + speech(A) + speech(B) + sil)
    phones, classes, starts = alignment_to_phone_states(ali, transition_id_tables(info, topo))
    assert phones.tolist() == [SIL] * 4 + [A] * 10 + [B] * 5 + [SIL] * 4
    assert classes.tolist() == [0, 0, 1, 4] + [0, 0, 1, 2, 2] * 3 + [0, 0, 1, 4]
    assert np.flatnonzero(starts).tolist() == [0, 4, 9, 14, 19]
