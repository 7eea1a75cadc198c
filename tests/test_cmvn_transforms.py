"""CMVN stats and application, add-deltas and splicing against kaldi-native-fbank; composing transforms."""
import kaldi_native_fbank as knf
import numpy as np
import pytest
import torch

from esgd_asr.errors import EsgdError
from esgd_asr.features.cmvn import add_cmvn_stats, apply_cmvn, cmvn_stats
from esgd_asr.features.transforms import AddDeltas, ApplyCmvn, Compose, Splice, add_deltas, delta_scales, splice


def random_feats(frames=37, dim=13, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((frames, dim)) * 3 + rng.standard_normal(dim) * 5).astype(np.float32)


def test_cmvn_stats_match_knf_and_accumulate():
    a, b = random_feats(seed=1), random_feats(frames=20, seed=2)
    np.testing.assert_allclose(cmvn_stats(a).numpy(), knf.compute_cmvn_stats(a), rtol=1e-12)
    total = add_cmvn_stats(add_cmvn_stats(None, a), b).numpy()
    np.testing.assert_allclose(total, knf.compute_cmvn_stats(np.concatenate([a, b])), rtol=1e-10)
    assert total[0, -1] == 57 and total[1, -1] == 0
    with pytest.raises(EsgdError, match="feature dim 5 differs"):
        add_cmvn_stats(torch.tensor(total), random_feats(dim=5))


@pytest.mark.parametrize("norm_vars", [False, True])
def test_apply_cmvn_matches_knf(norm_vars):
    feats, other = random_feats(seed=3), random_feats(seed=4)
    stats = knf.compute_cmvn_stats(other)
    opts = knf.CmvnOptions()
    opts.norm_vars = norm_vars
    ref = knf.apply_cmvn(stats, opts, feats)
    np.testing.assert_allclose(apply_cmvn(torch.from_numpy(feats), stats, norm_vars).numpy(), ref, atol=1e-5)
    own = apply_cmvn(feats, cmvn_stats(feats), norm_vars).numpy()
    np.testing.assert_allclose(own.mean(axis=0), 0, atol=1e-5)
    if norm_vars:
        np.testing.assert_allclose(own.std(axis=0), 1, atol=1e-4)


def test_apply_cmvn_rejects_bad_stats():
    feats = random_feats()
    with pytest.raises(EsgdError, match="utt9: CMVN stats of shape"):
        apply_cmvn(feats, np.zeros((2, 5)), name="utt9")
    with pytest.raises(EsgdError, match="insufficient CMVN stats"):
        apply_cmvn(feats, np.zeros((2, 14)), name="utt9")
    with pytest.raises(EsgdError, match="variance normalisation"):
        apply_cmvn(feats, cmvn_stats(feats)[:1], norm_vars=True)
    mean_only = apply_cmvn(feats, cmvn_stats(feats)[:1])
    np.testing.assert_allclose(mean_only.numpy().mean(axis=0), 0, atol=1e-5)


@pytest.mark.parametrize("frames", [1, 2, 3, 7, 40])
@pytest.mark.parametrize("order,window", [(2, 2), (1, 2), (3, 1), (2, 3)])
def test_add_deltas_matches_knf(frames, order, window):
    feats = random_feats(frames=frames, seed=frames)
    opts = knf.DeltaOptions()
    opts.order, opts.window = order, window
    ref = knf.compute_deltas(opts, feats)
    ours = add_deltas(torch.from_numpy(feats), order, window).numpy()
    assert ours.shape == (frames, 13 * (order + 1))
    np.testing.assert_allclose(ours, ref, atol=1e-5)


def test_delta_formula_first_order():
    scales = delta_scales(1, 2).numpy()
    np.testing.assert_allclose(scales[1], np.arange(-2, 3) / 10.0)
    x = torch.arange(10, dtype=torch.float32)[:, None] ** 2
    d = add_deltas(x, order=1, window=2)[:, 1]
    t = 5  # interior: sum_j j x(t+j) / 10 of t^2 is 2t
    assert float(d[t]) == pytest.approx(2 * t)


@pytest.mark.parametrize("left,right", [(0, 0), (4, 4), (2, 5), (3, 0)])
def test_splice_matches_knf(left, right):
    feats = random_feats(frames=6, dim=4)
    opts = knf.SpliceOptions()
    opts.left_context, opts.right_context = left, right
    np.testing.assert_array_equal(splice(torch.from_numpy(feats), left, right).numpy(), knf.splice_frames(feats, opts))


def test_compose_chains_transforms_on_tensors():
    feats = torch.from_numpy(random_feats(frames=12))
    stats = cmvn_stats(feats)
    chain = Compose([ApplyCmvn(stats, norm_vars=True), AddDeltas(2, 2), Splice(1, 1)])
    out = chain(feats)
    assert out.shape == (12, 13 * 3 * 3) and out.dtype == torch.float32
    torch.testing.assert_close(out, splice(add_deltas(apply_cmvn(feats, stats, True)), 1, 1))
    assert "AddDeltas" in repr(chain)
    with pytest.raises(EsgdError, match="non-empty"):
        chain(torch.zeros(0, 13))
