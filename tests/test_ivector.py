"""UBM and i-vector extractor: EM monotonicity and exactness, speaker separation (EER), online extraction, CLIs."""
import math
import subprocess
from pathlib import Path

import kaldiio
import numpy as np
import pytest
import torch

from esgd_asr.cli import extract_ivectors, train_diag_ubm, train_ivector_extractor
from esgd_asr.errors import EsgdError
from esgd_asr.features.ivector import (IvectorExtractor, IvectorTrainOptions, PosteriorOptions, TrainingStats,
                                       em_iteration, train_extractor)
from esgd_asr.features.feature_source import FrontEnd
from esgd_asr.features.speaker_eval import cosine_eer, equal_error_rate
from esgd_asr.features.ubm import DiagGmm, GmmStats, UbmOptions, mle_update, train_diag_ubm as train_ubm

DIM, BASE_GAUSS, RANK = 10, 8, 4
REPO = Path(__file__).resolve().parents[1]
CONF = REPO / "conf" / "ivector.conf"


def synthetic_speakers(num_spk, utts_per_spk, num_frames, seed):
    """Utterances of speakers whose GMM means are shifted within a low-rank speaker subspace (a TV model)."""
    base = torch.Generator().manual_seed(1234)
    means = 2.0 * torch.randn(BASE_GAUSS, DIM, generator=base)
    subspace = 0.6 * torch.randn(BASE_GAUSS, DIM, RANK, generator=base)
    gen = torch.Generator().manual_seed(seed)
    utts = []
    for spk in range(num_spk):
        spk_means = means + subspace @ torch.randn(RANK, generator=gen)
        for _ in range(utts_per_spk):
            comp = torch.randint(0, BASE_GAUSS, (num_frames,), generator=gen)
            utts.append((spk, spk_means[comp] + 0.7 * torch.randn(num_frames, DIM, generator=gen)))
    return utts


@pytest.fixture(scope="module")
def trained():
    """A 16-Gaussian UBM and a 10-dim extractor trained on 40 synthetic speakers, with their histories."""
    torch.manual_seed(0)
    train = synthetic_speakers(40, 5, 300, seed=1)
    ubm_history, ie_history = [], []
    ubm = train_ubm(torch.cat([x for _, x in train]),
                    UbmOptions(num_gauss=16, num_iters_init=8, num_iters=6, num_gselect=None,
                               remove_low_count_gaussians=False), history=ubm_history)
    ie = IvectorExtractor.initialize(ubm, FrontEnd(cmvn=False), ivector_dim=10, posterior_opts=PosteriorOptions())
    stats = [ie.stats(x) for _, x in train]
    training_stats = TrainingStats(torch.stack([s[0] for s in stats]), torch.stack([s[1] for s in stats]),
                                   sum(s[2] for s in stats))
    ie = train_extractor(ie, training_stats, IvectorTrainOptions(num_iters=6, gaussian_min_count=1.0),
                         history=ie_history)
    return ubm, ie, ubm_history, ie_history


def test_ubm_em_log_likelihood_never_decreases(trained):
    _, _, history, _ = trained
    loglikes = [h["loglike"] for h in history if h["phase"] == "em"]
    assert len(loglikes) == 6
    assert all(b >= a - 1e-6 for a, b in zip(loglikes, loglikes[1:])), loglikes
    init = [h["loglike"] for h in history if h["phase"] == "init"]
    assert loglikes[-1] > init[0] + 1.0  # training did something


def test_ubm_em_step_matches_a_direct_computation():
    gen = torch.Generator().manual_seed(6)
    x = 2 * torch.randn(3000, DIM, generator=gen, dtype=torch.float64)
    gmm = DiagGmm(torch.softmax(torch.randn(5, generator=gen, dtype=torch.float64), 0),
                  torch.randn(5, DIM, generator=gen, dtype=torch.float64),
                  torch.rand(5, DIM, generator=gen, dtype=torch.float64) + 0.5)
    logp = (torch.distributions.Normal(gmm.means, gmm.variances.sqrt()).log_prob(x[:, None, :]).sum(2)
            + gmm.weights.log())
    post = logp.softmax(1)
    count = post.sum(0)
    means = post.T @ x / count[:, None]
    stats = GmmStats.accumulate(gmm, x, chunk_frames=1000)
    new = mle_update(gmm, stats, min_variance=1e-6, min_gaussian_weight=0.0)
    assert stats.loglike == pytest.approx(float(torch.logsumexp(logp, 1).sum()), rel=1e-10)
    torch.testing.assert_close(new.weights, count / len(x))
    torch.testing.assert_close(new.means, means)
    torch.testing.assert_close(new.variances, post.T @ x ** 2 / count[:, None] - means ** 2)
    top, _ = gmm.posteriors(x, num_gselect=2, min_post=0.3)
    assert ((top > 0).sum(1) <= 2).all() and torch.allclose(top.sum(1), torch.ones(len(x), dtype=x.dtype))
    assert (top.argmax(1) == post.argmax(1)).all()
    pair = (top > 0).sum(1) == 2  # both kept: in the ratio of the full posteriors
    kept, idx = top[pair].topk(2, 1)
    full = post[pair].gather(1, idx)
    assert pair.sum() > 100 and (kept >= 0.3).all()
    torch.testing.assert_close(kept[:, 0] / kept[:, 1], full[:, 0] / full[:, 1])


def test_ivector_em_objective_never_decreases(trained):
    _, _, _, history = trained
    objf = [h["objf"] for h in history]
    assert all(b >= a - 1e-9 for a, b in zip(objf, objf[1:])), objf
    assert objf[-1] > objf[0]


def exact_loglike(ie, log_var, M, offset, gamma, first, second_total):
    """log p(stats) of the TV model in closed form (w integrated out), differentiable in M, log_var, offset."""
    var = log_var.exp()
    C, D, S = M.shape
    gconst = ie.ubm.weights.double().log() - 0.5 * (D * math.log(2 * math.pi) + log_var.sum(1))
    prec = torch.eye(S, dtype=M.dtype) + torch.einsum("uc,cds,cdt->ust", gamma, M / var[:, :, None], M)
    lin = torch.einsum("ucd,cds->us", first, M / var[:, :, None]) + offset * torch.eye(S, dtype=M.dtype)[0]
    quad = (lin[:, None, :] @ torch.linalg.solve(prec, lin[:, :, None])).sum()
    return ((gamma @ gconst).sum() - 0.5 * len(gamma) * offset ** 2 - 0.5 * torch.logdet(prec).sum() + 0.5 * quad
            - 0.5 * (second_total / var).sum())


def grid_loglike(ie, gamma, first, second):
    """The same for one utterance of a 2-dim model by summing over a fine grid of i-vectors w."""
    var = ie.variances
    gconst = ie.ubm.weights.double().log() - 0.5 * (ie.feat_dim * math.log(2 * math.pi) + var.log().sum(1))
    axis = torch.linspace(-12, 12, 1201, dtype=torch.float64)
    w = torch.stack(torch.meshgrid(axis, axis, indexing="ij"), -1).reshape(-1, 2)
    w[:, 0] += ie.prior_offset
    mw = torch.einsum("cds,ns->ncd", ie.M, w)
    acoustic = (gamma @ gconst) - 0.5 * ((second - 2 * first * mw + gamma[:, None] * mw ** 2) / var).sum((1, 2))
    log_prior = -math.log(2 * math.pi) - 0.5 * ((w - ie.prior_offset * torch.eye(2, dtype=w.dtype)[0]) ** 2).sum(1)
    return float(torch.logsumexp(acoustic + log_prior, 0) + 2 * math.log(axis[1] - axis[0]))


@pytest.fixture(scope="module")
def small_model():
    """A 3-Gaussian, 2-dim-feature, 2-dim i-vector extractor with the exact stats of 40 utterances."""
    gen = torch.Generator().manual_seed(5)
    C, D, S = 3, 2, 2
    ubm = DiagGmm(torch.full((C,), 1 / C), 3 * torch.randn(C, D, generator=gen), torch.ones(C, D))
    loading = torch.randn(C, D, S, generator=gen)
    utts = []
    for _ in range(40):
        comp = torch.randint(0, C, (50,), generator=gen)
        w = torch.randn(S, generator=gen)
        utts.append(ubm.means[comp] + loading[comp] @ w + 0.5 * torch.randn(50, D, generator=gen))
    ie = IvectorExtractor.initialize(ubm, FrontEnd(cmvn=False), S, PosteriorOptions(C, 0.0, 1.0))
    ie = IvectorExtractor(ie.ubm, ie.front_end, ie.M, ie.variances, 1.5, ie.posterior_opts)  # a grid-sized offset
    per_utt = [ie.stats(x) for x in utts]
    stats = TrainingStats(torch.stack([s[0] for s in per_utt]), torch.stack([s[1] for s in per_utt]),
                          sum(s[2] for s in per_utt))
    return ie, stats, per_utt[0]


def test_ivector_objective_is_the_exact_marginal_likelihood(small_model):
    ie, stats, (gamma, first, second) = small_model
    _, objf = em_iteration(ie, stats, IvectorTrainOptions(gaussian_min_count=0.0))
    closed = exact_loglike(ie, ie.variances.log(), ie.M, ie.prior_offset, stats.gamma, stats.first,
                           stats.second_total)
    assert objf * float(stats.gamma.sum()) == pytest.approx(float(closed), rel=1e-9)
    one = exact_loglike(ie, ie.variances.log(), ie.M, ie.prior_offset, gamma[None], first[None], second)
    assert grid_loglike(ie, gamma, first, second) == pytest.approx(float(one), abs=1e-6)


def test_ivector_em_converges_to_a_stationary_point(small_model):
    """EM fixed points are stationary points of the likelihood: a wrong M, variance or prior update is not."""
    ie, stats, _ = small_model

    def gradient_norm(model):
        params = [model.M.clone().requires_grad_(), model.variances.log().requires_grad_(),
                  torch.tensor(model.prior_offset, dtype=torch.float64, requires_grad=True)]
        exact_loglike(model, params[1], params[0], params[2], stats.gamma, stats.first,
                      stats.second_total).backward()
        return float(torch.cat([p.grad.reshape(-1) for p in params]).norm())

    start = gradient_norm(ie)
    ie = train_extractor(ie, stats, IvectorTrainOptions(num_iters=60, gaussian_min_count=0.0))
    assert gradient_norm(ie) < 1e-6 * start


def test_ivectors_separate_held_out_speakers(trained):
    _, ie, _, _ = trained
    test = synthetic_speakers(20, 4, 300, seed=2)
    ivectors = torch.stack([ie.extract(x) for _, x in test])
    labels = torch.tensor([spk for spk, _ in test])
    eer = cosine_eer(ivectors, labels)
    assert eer < 0.03, eer  # an untrained (random) extractor gives about 0.1 here
    assert equal_error_rate(torch.tensor([0.0, 1.0]), torch.tensor([0.5, 2.0])) == pytest.approx(0.5)


def test_online_ivectors_use_the_frames_so_far(trained):
    _, ie, _, _ = trained
    x = synthetic_speakers(1, 1, 95, seed=3)[0][1]
    online = ie.extract_online(x, ivector_period=10)
    assert online.shape == (10, ie.ivector_dim)
    for k in (0, 4, 9):
        torch.testing.assert_close(online[k], ie.extract(x[:10 * k + 1]), rtol=1e-4, atol=1e-4)
    capped = ie.extract_online(x, ivector_period=10, max_count=2.0)
    assert capped[-1].norm() < online[-1].norm()  # scaled-down stats: pulled toward the prior mean


def test_dimension_mismatch_is_a_clear_error(trained):
    _, ie, _, _ = trained
    with pytest.raises(EsgdError, match="feature dimension 11 does not match the UBM's dimension 10"):
        ie.extract(torch.randn(50, DIM + 1), where="utt1")


def write_data_dir(path, utts, dim_slice=slice(None)):
    """feats.scp/ark, utt2spk and per-speaker cmvn.scp/ark (Kaldi stats format) for (spk, feats) pairs."""
    path.mkdir()
    keys, spk_feats = [], {}
    with kaldiio.WriteHelper(f"ark,scp:{path / 'feats.ark'},{path / 'feats.scp'}") as writer:
        for i, (spk, x) in enumerate(utts):
            key = f"spk{spk}-utt{i:03d}"
            feats = x[:, dim_slice].numpy() + 5.0  # an offset for CMVN to remove
            writer(key, feats)
            keys.append((key, f"spk{spk}"))
            spk_feats.setdefault(f"spk{spk}", []).append(feats.astype(np.float64))
    (path / "utt2spk").write_text("".join(f"{k} {s}\n" for k, s in keys))
    with kaldiio.WriteHelper(f"ark,scp:{path / 'cmvn.ark'},{path / 'cmvn.scp'}") as writer:
        for spk, feats in sorted(spk_feats.items()):
            x = np.concatenate(feats)
            stats = np.zeros((2, x.shape[1] + 1))
            stats[0, :-1], stats[0, -1], stats[1, :-1] = x.sum(0), len(x), (x * x).sum(0)
            writer(spk, stats)
    return keys


def test_cli_round_trip(tmp_path, capsys):
    data = tmp_path / "data"
    keys = write_data_dir(data, synthetic_speakers(6, 3, 120, seed=4))
    ubm_dir, ie_dir, iv_dir = tmp_path / "ubm", tmp_path / "ie", tmp_path / "iv"
    train_diag_ubm.main(["--num-gauss=8", "--num-iters-init=4", "--num-iters=2", "--num-gselect=4",
                         "--subsample=1", "--delta-order=1", str(data), str(ubm_dir)])
    train_ivector_extractor.main(["--ivector-dim=5", "--num-iters=2", "--gaussian-min-count=1",
                                  "--posterior-scale=1.0", str(data), str(ubm_dir), str(ie_dir)])
    assert (ie_dir / "final.ie").is_file() and not (ie_dir / "stats.tmp").exists()
    for job in (1, 2):
        extract_ivectors.main([f"--config={CONF}", "--nj=2", f"--job={job}", "--per-utt=true", "--per-spk=true",
                               str(data), str(ie_dir), str(iv_dir)])
    online = {k: v for job in (1, 2) for k, v in kaldiio.load_scp(str(iv_dir / f"ivector_online.{job}.scp")).items()}
    per_utt = {k: v for job in (1, 2) for k, v in kaldiio.load_scp(str(iv_dir / f"ivectors_utt.{job}.scp")).items()}
    per_spk = {k: v for job in (1, 2) for k, v in kaldiio.load_scp(str(iv_dir / f"ivectors_spk.{job}.scp")).items()}
    assert sorted(online) == sorted(per_utt) == [k for k, _ in keys]
    assert all(m.shape == (12, 5) for m in online.values())
    assert all(v.shape == (5,) for v in per_utt.values()) and sorted(per_spk) == [f"spk{s}" for s in range(6)]
    assert (iv_dir / "ivector_period").read_text() == "10\n"

    # a data dir whose features do not fit the UBM: one clear line naming the utterance and the model
    other = tmp_path / "other"
    write_data_dir(other, synthetic_speakers(1, 1, 50, seed=5), dim_slice=slice(0, 7))
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        extract_ivectors.main([str(other), str(ie_dir), str(tmp_path / "iv2")])
    assert exit_info.value.code == 1
    err = capsys.readouterr().err.strip()
    assert "spk0-utt000" in err and "final.ie" in err
    assert "feature dimension 14 does not match the UBM's dimension 20" in err and "\n" not in err



def test_same_seed_same_models_another_seed_other_ones(tmp_path):
    """run.sh's --seed reaches the UBM and extractor trainers (as --srand): two runs with one seed give
    byte-identical final.dubm and final.ie, another seed other ones."""
    data = tmp_path / "data"
    write_data_dir(data, synthetic_speakers(4, 2, 60, seed=4))
    (tmp_path / "UBM").mkdir()
    (tmp_path / "UBM" / "final.dubm").touch()

    def step_command(script: str, *args) -> str:  # the esgd-* command line a step runs (--cmd echo prints it)
        result = subprocess.run(["bash", str(REPO / "steps" / script), "--cmd", "echo", "--seed", "7", *map(str, args)],
                                capture_output=True, text=True, cwd=REPO)
        assert result.returncode == 0, result.stderr
        return result.stdout.split(maxsplit=2)[2]  # without the log file and the command name

    ubm_args = step_command("train_diag_ubm.sh", "--num-iters", 2, data, 8, tmp_path / "UBM")
    ie_args = step_command("train_ivector_extractor.sh", "--ivector-dim", 5, "--num-iters", 2, data, tmp_path / "UBM",
                           tmp_path / "IE")
    assert "--srand 7" in ubm_args and "--srand 7" in ie_args
    models = {}
    for run, seed in (("a", 7), ("b", 7), ("c", 8)):
        ubm, ie = tmp_path / run / "ubm", tmp_path / run / "ie"
        train_diag_ubm.main(ubm_args.replace(str(tmp_path / "UBM"), str(ubm)).split()
                            + ["--srand", str(seed), "--num-iters-init=4", "--num-gselect=4", "--subsample=1"])
        train_ivector_extractor.main(ie_args.replace(str(tmp_path / "UBM"), str(ubm))
                                     .replace(str(tmp_path / "IE"), str(ie)).split()
                                     + ["--srand", str(seed), "--gaussian-min-count=1", "--posterior-scale=1.0"])
        models[run] = [(ubm / "final.dubm").read_bytes(), (ie / "final.ie").read_bytes()]
    assert models["a"] == models["b"]
    assert models["a"][0] != models["c"][0] and models["a"][1] != models["c"][1]


def test_trainers_stopped_after_a_pass_continue_to_the_same_models(tmp_path, monkeypatch, capsys, caplog):
    """--stage N of the UBM and extractor trainers: a run stopped during pass 2 (after 1.dubm / 1.ie) and continued
    from its newest model ends with the models of an uninterrupted run, byte for byte; the extractor reuses the
    stopped run's complete statistics; a numbered model of another UBM is refused."""
    caplog.set_level("INFO")
    data = tmp_path / "data"
    write_data_dir(data, synthetic_speakers(4, 2, 60, seed=4))
    ubm_opts = ["--num-gauss=8", "--num-iters-init=4", "--num-iters=3", "--num-gselect=4", "--subsample=1",
                "--delta-order=1", str(data)]
    ie_opts = ["--ivector-dim=5", "--num-iters=3", "--gaussian-min-count=1", "--posterior-scale=1.0", str(data)]
    whole, split = tmp_path / "whole", tmp_path / "split"
    train_diag_ubm.main(ubm_opts + [str(whole / "ubm")])
    train_ivector_extractor.main(ie_opts + [str(whole / "ubm"), str(whole / "ie")])
    assert sorted(p.name for p in (whole / "ubm").glob("[0-9]*")) == ["3.dubm"]  # the newest only

    def stop_in_pass(module, name, n):  # the n-th call of a pass function raises, as a kill would stop it
        real, calls = getattr(module, name), []

        def stopping(*args, **kwargs):
            calls.append(1)
            if len(calls) == n:
                raise KeyboardInterrupt
            return real(*args, **kwargs)
        monkeypatch.setattr(module, name, stopping)

    import esgd_asr.features.ivector as ivector_module
    import esgd_asr.features.ubm as ubm_module
    stop_in_pass(ubm_module.GmmStats, "accumulate", 4 + 2)  # 4 initialisation passes, EM pass 1
    with pytest.raises(SystemExit, match="130"):  # the commands' exit status when interrupted
        train_diag_ubm.main(ubm_opts + [str(split / "ubm")])
    monkeypatch.undo()
    assert [p.name for p in (split / "ubm").glob("[0-9]*")] == ["1.dubm"] and not (split / "ubm/final.dubm").exists()
    train_diag_ubm.main(ubm_opts[:-1] + ["--stage=1", str(data), str(split / "ubm")])
    assert (split / "ubm/final.dubm").read_bytes() == (whole / "ubm/final.dubm").read_bytes()

    stop_in_pass(ivector_module, "em_iteration", 2)
    with pytest.raises(SystemExit, match="130"):
        train_ivector_extractor.main(ie_opts + [str(split / "ubm"), str(split / "ie")])
    monkeypatch.undo()
    assert (split / "ie/1.ie").is_file() and (split / "ie/stats.tmp/complete").is_file()
    train_ivector_extractor.main(ie_opts[:-1] + ["--stage=1", str(data), str(split / "ubm"), str(split / "ie")])
    assert "using the stats of the stopped run" in caplog.text
    assert (split / "ie/final.ie").read_bytes() == (whole / "ie/final.ie").read_bytes()
    assert not (split / "ie/stats.tmp").exists()

    # the extractor's numbered model belongs to another UBM: refused in one line
    train_diag_ubm.main(ubm_opts[:-1] + ["--srand=5", str(data), str(tmp_path / "other_ubm")])
    capsys.readouterr()
    with pytest.raises(SystemExit):
        train_ivector_extractor.main(ie_opts[:-1] + ["--stage=3", str(data), str(tmp_path / "other_ubm"),
                                                     str(split / "ie")])
    assert "was trained on another UBM" in capsys.readouterr().err
