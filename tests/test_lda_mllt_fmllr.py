"""LDA, MLLT and fMLLR on synthetic data with known answers; the speaker-adapted LDA reader on a tiny data dir."""
import math
from pathlib import Path

import kaldiio
import numpy as np
import pytest
import torch

from esgd_asr.cli.options import KaldiArgumentParser, add_dataclass_options, dataclass_from_args
from esgd_asr.errors import EsgdError
from esgd_asr.features.affine_io import (apply_affine, compose_affine, identity_affine, read_matrix,
                                         write_matrix, write_transforms)
from esgd_asr.features.cmvn import apply_cmvn, cmvn_stats
from esgd_asr.features.feature_io import ArkScpWriter
from esgd_asr.features.fmllr import (FmllrAccs, FmllrOptions, LdaFeatureReader, SpeakerAdaptedLda,
                                     estimate_fmllr)
from esgd_asr.features.lda import LdaAccs, LdaMlltOptions
from esgd_asr.features.mllt import DiagGaussians, MlltAccs, compose_mllt
from esgd_asr.features.transforms import ApplyCmvn, Compose, splice

REPO_CONF = Path(__file__).resolve().parents[1] / "conf" / "lda.conf"


def gen(seed):
    return torch.Generator().manual_seed(seed)


def class_stats(y, labels, num_classes):
    """ML per-class means and diagonal variances."""
    count = torch.bincount(labels, minlength=num_classes).double()
    mean = torch.zeros(num_classes, y.shape[1], dtype=torch.float64).index_add_(0, labels, y) / count[:, None]
    var = torch.zeros_like(mean).index_add_(0, labels, (y - mean[labels]).square()) / count[:, None]
    return mean, var


def principal_cosines(a, b):
    """Cosines of the principal angles between the column spaces of a and b."""
    qa, qb = torch.linalg.qr(a)[0], torch.linalg.qr(b)[0]
    return torch.linalg.svdvals(qa.T @ qb)


# ------------------------------------------------------------------------------------------------------------- LDA

def lda_data(seed=0, D=12, C=8, per_class=1500, k=3):
    g = gen(seed)
    U = torch.linalg.qr(torch.randn(D, k, generator=g, dtype=torch.float64))[0]
    coords = torch.randn(C, k, generator=g, dtype=torch.float64) * torch.tensor([8.0, 4.0, 2.0], dtype=torch.float64)
    means = coords @ U.T + 5.0
    M = torch.eye(D, dtype=torch.float64) + 0.4 * torch.randn(D, D, generator=g, dtype=torch.float64)
    labels = torch.arange(C).repeat_interleave(per_class)
    x = means[labels] + torch.randn(len(labels), D, generator=g, dtype=torch.float64) @ M.T
    return x, labels, U, M @ M.T


def test_lda_recovers_discriminant_directions_with_unit_within_class_covariance(tmp_path):
    x, labels, U, within_true = lda_data()
    accs, other = LdaAccs(8, 12), LdaAccs(8, 12)
    accs.accumulate(x[:5000], labels[:5000])
    other.accumulate(x[5000:], labels[5000:].numpy())  # two "jobs", summed
    accs.save(tmp_path / "1.acc")
    accs = LdaAccs.load(tmp_path / "1.acc")
    accs += other
    res = accs.estimate(dim=6)
    assert res.matrix.shape == (6, 13) and torch.equal(res.matrix[:, -1], torch.zeros(6, dtype=torch.float64))
    # the top-3 rows span Sw^-1 U: the generalised eigenvectors of B v = l Sw v for B of column space U
    cos = principal_cosines(res.matrix[:3, :-1].T, torch.linalg.solve(within_true, U))
    assert float(cos.min()) > 0.995, cos
    # within-class covariance of the output is I (all dims), between-class is diag(eigenvalues), decreasing
    y = x @ res.full.T
    mean, _ = class_stats(y, labels, 8)
    resid = y - mean[labels]
    within = resid.T @ resid / len(y)
    assert torch.allclose(within, torch.eye(12, dtype=torch.float64), atol=1e-8)
    centred = mean - y.mean(0)
    between = centred.T @ centred / 8  # equal class sizes
    assert torch.allclose(between, torch.diag(res.eigenvalues), atol=1e-8)
    ev = res.eigenvalues
    assert bool((ev[:-1] >= ev[1:]).all())
    assert float(ev[2]) > 1.0 and float(ev[3:].max()) < 0.02 * float(ev[2])
    # remove_offset: the projected data have zero mean
    shifted = accs.estimate(dim=6, remove_offset=True)
    assert torch.allclose(apply_affine(x, shifted.matrix).mean(0), torch.zeros(6, dtype=torch.float64), atol=1e-8)
    # Kaldi matrix files, binary and text, read back by kaldiio
    write_matrix(tmp_path / "final.mat", shifted.matrix)
    write_matrix(tmp_path / "final.mat.txt", shifted.matrix, binary=False)
    for name in ("final.mat", "final.mat.txt"):
        back = kaldiio.load_mat(str(tmp_path / name))
        assert back.shape == (6, 13)
        np.testing.assert_allclose(back, shifted.matrix.numpy(), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(read_matrix(tmp_path / "final.mat.txt"), shifted.matrix.numpy(), rtol=1e-7)
    assert (tmp_path / "final.mat.txt").read_text().startswith(" [\n")


def test_lda_errors():
    accs = LdaAccs(4, 6)
    with pytest.raises(EsgdError, match="utt7: feature dim 5 differs"):
        accs.accumulate(torch.zeros(3, 5), torch.zeros(3, dtype=torch.long), name="utt7")
    with pytest.raises(EsgdError, match="index 4 outside"):
        accs.accumulate(torch.zeros(3, 6), torch.tensor([0, 4, 1]))
    accs.accumulate(torch.randn(50, 6, generator=gen(1)), torch.arange(50) % 4)
    with pytest.raises(EsgdError, match="needs more than 4 classes"):
        accs.estimate(dim=4)
    with pytest.raises(EsgdError, match="no such statistics file"):
        LdaAccs.load("/nonexistent/x.acc")


def test_lda_conf_matches_options():
    parser = KaldiArgumentParser()
    add_dataclass_options(parser, LdaMlltOptions)
    opts = dataclass_from_args(LdaMlltOptions, parser.parse_args(["--config", str(REPO_CONF)]))
    assert opts == LdaMlltOptions() and opts.splice_width == 9
    assert opts.mllt_iteration_set() == [2, 4, 6, 12]


# ------------------------------------------------------------------------------------------------------------ MLLT

def test_mllt_objective_monotone_and_undoes_a_rotation_of_diagonal_gaussians():
    D, C, per_class = 5, 6, 2500
    g = gen(2)
    z_means = 3.0 * torch.randn(C, D, generator=g, dtype=torch.float64)
    z_vars = torch.exp(1.0 * torch.randn(C, D, generator=g, dtype=torch.float64))
    Q = torch.linalg.qr(torch.randn(D, D, generator=g, dtype=torch.float64))[0]
    labels = torch.arange(C).repeat_interleave(per_class)
    z = z_means[labels] + torch.randn(len(labels), D, generator=g, dtype=torch.float64) * z_vars[labels].sqrt()
    x = z @ Q.T  # the diagonal Gaussians, rotated
    A, loglikes = torch.eye(D, dtype=torch.float64), []
    for it in range(12):
        y = x @ A.T
        mean, var = class_stats(y, labels, C)
        # data log-likelihood of the semi-tied model (Jacobian included): EM-like ascent must never lower it
        loglikes.append(float(len(y) * torch.linalg.slogdet(A).logabsdet
                              - 0.5 * (((y - mean[labels]).square() / var[labels]) + var[labels].log()).sum()))
        accs = MlltAccs(D)
        accs.accumulate(y, mean, var, labels)
        res = accs.update(num_iters=50)
        steps = np.diff(res.objf)
        assert (steps >= -1e-9 * abs(res.objf[0])).all(), steps
        assert res.objf_impr >= 0 and res.count == len(y)
        if it == 0:
            # Q(B) is the transformed data's log-likelihood under the transformed means and fixed variances
            B = res.matrix
            direct = len(y) * torch.linalg.slogdet(B).logabsdet \
                - 0.5 * ((((y - mean[labels]) @ B.T).square()) / var[labels]).sum()
            assert math.isclose(accs.objective(B), float(direct), rel_tol=1e-9)
            assert res.objf_impr > 0.05 * len(y)  # a rotation is worth a lot
        A = res.matrix @ A
    assert (np.diff(loglikes) >= -1e-6 * abs(loglikes[0])).all(), loglikes
    # A Q is a scaled signed permutation: each row has one dominant entry, in distinct columns
    P = A @ Q
    rows = P / P.norm(dim=1, keepdim=True)
    assert float(rows.abs().max(1).values.min()) > 0.995, rows
    assert sorted(rows.abs().argmax(1).tolist()) == list(range(D))


def test_mllt_composes_with_lda_and_transforms_means():
    g = gen(3)
    lda = torch.randn(4, 10, generator=g, dtype=torch.float64)  # (dim, D + 1): offset in the last column
    A = torch.randn(4, 4, generator=g, dtype=torch.float64)
    final = compose_mllt(A, lda)
    x = torch.randn(7, 9, generator=g, dtype=torch.float64)
    assert torch.allclose(apply_affine(x, final), apply_affine(x, lda) @ A.T, atol=1e-10)
    gauss = DiagGaussians(torch.ones(3) / 3, torch.randn(3, 4, generator=g), torch.ones(3, 4), torch.zeros(3))
    assert torch.allclose(gauss.transform_means(A).means, gauss.means @ A.T)
    with pytest.raises(EsgdError, match="does not fit features of dim 5"):
        apply_affine(torch.zeros(2, 5), lda, "utt3")


def test_gauss_posteriors_within_the_aligned_pdf():
    g = gen(12)
    gauss2pdf = torch.tensor([1, 0, 1, 2, 0, 1])
    gmm = DiagGaussians(torch.tensor([0.5, 0.3, 0.2, 1.0, 0.7, 0.3]), torch.randn(6, 3, generator=g),
                        torch.exp(torch.randn(6, 3, generator=g)), gauss2pdf)
    x = torch.randn(9, 3, generator=g, dtype=torch.float64)
    ali = torch.tensor([0, 1, 2, 1, 1, 0, 2, 2, 1])
    weights = torch.tensor([1.0, 0.5, 1.0, 0.0, 1.0, 2.0, 1.0, 1.0, 0.25], dtype=torch.float64)
    post, loglike = gmm.gauss_posteriors(x, ali, weights)
    dense = torch.zeros(9, 6, dtype=torch.float64).index_put_((post.frames, post.index), post.weights, accumulate=True)
    ll = gmm.weights.log() + gauss_loglike(x[:, None, :], gmm.means, gmm.variances)  # (T, G)
    ll = ll.masked_fill(gauss2pdf[None, :] != ali[:, None], -math.inf)
    expected = torch.softmax(ll, 1) * weights[:, None]
    assert torch.allclose(dense, expected, atol=1e-12)
    assert math.isclose(loglike, float((torch.logsumexp(ll, 1) * weights).sum()), rel_tol=1e-12)


def test_gaussians_from_kaldi_am_follow_the_pdf_scorer_order():
    khg = pytest.importorskip("kaldi_hmm_gmm")
    from esgd_asr.gmm.model import PdfScorer

    rng = np.random.default_rng(13)
    am = khg.AmDiagGmm()
    for num in (2, 1, 3):
        gmm = khg.DiagGmm(nmix=num, dim=3)
        gmm.set_weights(np.full(num, 1.0 / num, dtype=np.float32))
        gmm.set_means(rng.standard_normal((num, 3)).astype(np.float32))
        gmm.set_invvars(np.exp(rng.standard_normal((num, 3))).astype(np.float32))
        gmm.compute_gconsts()
        am.add_pdf(gmm)
    gauss = DiagGaussians.from_am(am)
    assert gauss.num_gauss == 6 and gauss.num_pdfs == 3 and gauss.gauss2pdf.tolist() == [0, 0, 1, 2, 2, 2]
    x = torch.randn(5, 3, generator=gen(14), dtype=torch.float64)
    ours = torch.log(gauss.weights) + gauss_loglike(x[:, None, :], gauss.means, gauss.variances)
    theirs = PdfScorer(am).gauss_loglikes(x)[:, :6]
    assert torch.allclose(ours, theirs.double(), atol=1e-4)


# ----------------------------------------------------------------------------------------------------------- fMLLR

def fmllr_setup(seed=4, D=4, num_gauss=6, frames=12000, distortion=0.3):
    g = gen(seed)
    means = 4.0 * torch.randn(num_gauss, D, generator=g, dtype=torch.float64)
    variances = torch.exp(0.5 * torch.randn(num_gauss, D, generator=g, dtype=torch.float64))
    labels = torch.randint(num_gauss, (frames,), generator=g)
    x = means[labels] + torch.randn(frames, D, generator=g, dtype=torch.float64) * variances[labels].sqrt()
    M = torch.eye(D, dtype=torch.float64) + distortion * torch.randn(D, D, generator=g, dtype=torch.float64)
    c = torch.randn(D, generator=g, dtype=torch.float64)
    y = x @ M.T + c  # the speaker's distortion
    Minv = torch.linalg.inv(M)
    return means, variances, labels, y, Minv, -Minv @ c


def gauss_loglike(x, means, variances):
    return (-0.5 * (math.log(2 * math.pi) + variances.log() + (x - means).square() / variances)).sum(-1)


def test_fmllr_auxf_monotone_and_recovers_the_inverse_distortion(tmp_path):
    means, variances, labels, y, A_true, b_true = fmllr_setup()
    accs = FmllrAccs(4)
    accs.accumulate(y[:5000], means, variances, labels[:5000])
    part = FmllrAccs(4)
    part.accumulate(y[5000:], means, variances, torch.nn.functional.one_hot(labels[5000:], 6).double())
    part.save(tmp_path / "spk.acc")
    accs += FmllrAccs.load(tmp_path / "spk.acc")
    res = accs.update(FmllrOptions(num_iters=15))
    steps = np.diff(res.auxf)
    assert (steps >= -1e-9 * abs(res.auxf[0])).all(), res.auxf
    assert res.objf_impr > 0 and res.count == len(y)
    assert torch.allclose(res.matrix[:, :4], A_true, atol=0.04), (res.matrix, A_true)
    assert torch.allclose(res.matrix[:, 4], b_true, atol=0.06), (res.matrix, b_true)
    # the auxf is the adapted frames' log-likelihood incl. log|det A|, up to a constant: compare two transforms
    def direct(W):
        xa = apply_affine(y, W)
        return float(gauss_loglike(xa, means[labels], variances[labels]).sum()
                     + len(y) * torch.linalg.slogdet(W[:, :4]).logabsdet)
    W0 = identity_affine(4)
    assert math.isclose(accs.auxf(res.matrix) - accs.auxf(W0), direct(res.matrix) - direct(W0), rel_tol=1e-8)
    # the other update types never lower the auxf either
    for kind in ("offset", "diag"):
        other = accs.update(FmllrOptions(update_type=kind))
        assert other.objf_impr > 0 and other.auxf[-1] >= other.auxf[0]
    # too little data: the transform is kept
    kept = accs.update(FmllrOptions(min_count=1e9))
    assert torch.equal(kept.matrix, W0) and kept.objf_impr == 0.0


def test_fmllr_em_passes_with_model_posteriors():
    means, variances, _, y, A_true, b_true = fmllr_setup(seed=5, frames=8000, distortion=0.15)
    gmm = DiagGaussians.single_gmm(torch.full((6,), 1 / 6), means, variances)
    utts = [(y[:3000], torch.zeros(3000, dtype=torch.long)), (y[3000:], torch.zeros(5000, dtype=torch.long))]
    res = estimate_fmllr(utts, gmm, FmllrOptions(num_iters=10), num_passes=3)
    assert torch.allclose(res.matrix[:, :4], A_true, atol=0.05), (res.matrix, A_true)
    assert torch.allclose(res.matrix[:, 4], b_true, atol=0.08), (res.matrix, b_true)
    ll = res.pass_loglike
    assert len(ll) == 3 and ll[1] > ll[0] + 1000 and ll[2] >= ll[1] - 1e-6 * abs(ll[1]), ll


def test_identity_fmllr_leaves_features_unchanged():
    feats = torch.randn(20, 40, generator=gen(6))
    assert torch.equal(apply_affine(feats, identity_affine(40)), feats)
    final = torch.randn(40, 118, generator=gen(7))
    cmvnd = torch.randn(25, 13, generator=gen(8))
    plain = SpeakerAdaptedLda(final)(cmvnd)
    assert plain.shape == (25, 40) and torch.equal(SpeakerAdaptedLda(final, identity_affine(40))(cmvnd), plain)


# ------------------------------------------------------------------------------------------ reader on a data dir

def make_data_dir(root, final):
    g = gen(9)
    utt2spk = {"spkA-u1": "spkA", "spkA-u2": "spkA", "spkB-u1": "spkB"}
    feats = {u: (torch.randn(30 + 7 * i, 13, generator=g) * 2 + 3) for i, u in enumerate(utt2spk)}
    with ArkScpWriter(root / "feats.ark", root / "feats.scp") as w:
        for u, f in feats.items():
            w.write(u, f.numpy())
    stats = {s: cmvn_stats(torch.cat([feats[u] for u in utt2spk if utt2spk[u] == s])) for s in ("spkA", "spkB")}
    with ArkScpWriter(root / "cmvn.ark", root / "cmvn.scp") as w:
        for s, st in stats.items():
            w.write(s, st.numpy())
    (root / "utt2spk").write_text("".join(f"{u} {s}\n" for u, s in utt2spk.items()))
    write_matrix(root / "final.mat", final)
    trans = {s: identity_affine(40) + 0.05 * torch.randn(40, 41, generator=g, dtype=torch.float64)
             for s in ("spkA", "spkB")}
    write_transforms(root / "trans.ark", root / "trans.scp", trans)
    return utt2spk, feats, stats


def test_reader_equals_step_by_step_and_names_bad_input(tmp_path):
    final = torch.randn(40, 118, generator=gen(10), dtype=torch.float64) * 0.1
    utt2spk, feats, stats = make_data_dir(tmp_path, final)
    final32 = torch.from_numpy(read_matrix(tmp_path / "final.mat"))
    trans = kaldiio.load_scp(str(tmp_path / "trans.scp"))
    reader = LdaFeatureReader(tmp_path, tmp_path / "final.mat", tmp_path / "trans.scp")
    seen = dict(reader)
    assert sorted(seen) == sorted(utt2spk)
    for utt, spk in utt2spk.items():
        step = apply_cmvn(feats[utt], stats[spk]).double()
        step = splice(step, 4, 4) @ final32[:, :-1].T + final32[:, -1]
        W = torch.from_numpy(np.asarray(trans[spk], dtype=np.float64))
        step = step @ W[:, :-1].T + W[:, -1]
        assert seen[utt].shape == (len(feats[utt]), 40)
        torch.testing.assert_close(seen[utt].double(), step, atol=2e-4, rtol=1e-4)
        pipeline = Compose([ApplyCmvn(stats[spk], name=utt), reader.transform_for(utt)])
        assert torch.equal(pipeline(feats[utt]), seen[utt])
    # trans as an ark: same features
    from_ark = LdaFeatureReader(tmp_path, tmp_path / "final.mat", tmp_path / "trans.ark")
    assert torch.equal(from_ark.load("spkB-u1"), seen["spkB-u1"])
    # a final.mat for other features names the utterance
    write_matrix(tmp_path / "bad.mat", torch.randn(40, 100, generator=gen(11)))
    with pytest.raises(EsgdError, match="utterance 'spkA-u1'.*does not fit features of dim 13"):
        LdaFeatureReader(tmp_path, tmp_path / "bad.mat").load("spkA-u1")
    # a speaker without a transform names the speaker and the utterance
    write_transforms(tmp_path / "t2.ark", tmp_path / "t2.scp", {"spkA": identity_affine(40)})
    with pytest.raises(EsgdError, match="no fMLLR transform for speaker 'spkB' \\(utterance 'spkB-u1'\\)"):
        LdaFeatureReader(tmp_path, final, tmp_path / "t2.scp").load("spkB-u1")
    # an fMLLR of the wrong size names the utterance
    with pytest.raises(EsgdError, match="spkA-u1.*does not fit the 40-dim output"):
        LdaFeatureReader(tmp_path, final, {"spkA": identity_affine(30)}).load("spkA-u1")
    assert torch.allclose(compose_affine(identity_affine(40), final), final)
