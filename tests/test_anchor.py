"""Hybrid model files and anchors from outside: our checkpoints, bare state dicts and TorchScript round-trip;
models whose output dim is not the senone count or whose input dim is not the features' are refused."""
import pytest
import torch
from torch import nn

from esgd_asr.errors import EsgdError
from esgd_asr.hybrid.model_file import export_torchscript, load_anchor, load_hybrid_model, save_hybrid_model
from esgd_asr.models import BLSTMConfig, DNNConfig, build_model
from esgd_asr.models.nnet3_architecture import Nnet3Config

DNN = DNNConfig(feat_dim=5, splice=3, hidden=[8, 6], activations=["relu", "sigmoid"], num_targets=7)
BLSTM = BLSTMConfig(input_dim=6, num_layers=1, cells=4, bottleneck=3, num_targets=7, chunk=5)
NNET_INPUT = {"kind": "dnn", "cmvn": True, "norm_vars": False, "delta_order": 0, "left_context": 1,
              "right_context": 1, "chunk": 21, "ivector_period": 0, "global_stats": ((1.0, 2.0), (3.0, 0.0))}


def same_weights(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize("config", [DNN, BLSTM], ids=["dnn", "blstm"])
def test_checkpoint_and_torchscript_round_trip(config, tmp_path):
    torch.manual_seed(0)
    model = build_model(config)
    nnet_input = {**NNET_INPUT, "kind": "dnn" if config is DNN else "blstm"}
    path = save_hybrid_model(tmp_path / "final.pt", model, config, nnet_input, torch.arange(7.0), epochs=3)
    loaded = load_hybrid_model(path)
    assert loaded.config == config and loaded.nnet_input == nnet_input and loaded.pdf_counts.tolist() == list(range(7))
    anchor = load_anchor(path, config)
    assert same_weights(anchor, model)
    scripted = export_torchscript(loaded, tmp_path / "model.ts")
    from_script = load_hybrid_model(scripted)
    assert from_script.config is None and from_script.kind == nnet_input["kind"]
    assert from_script.nnet_input == {**nnet_input, "global_stats": [[1.0, 2.0], [3.0, 0.0]]}
    x = torch.randn(4, config.input_dim) if config is DNN else torch.randn(4, 5, config.input_dim)
    assert torch.allclose(from_script.module(x), model(x), atol=1e-6)
    assert same_weights(load_anchor(scripted, config), model)
    torch.save(model.state_dict(), tmp_path / "bare.pt")  # the population's final.pt: weights only
    assert same_weights(load_anchor(tmp_path / "bare.pt", config), model)


def test_output_dim_other_than_the_senone_count_is_refused(tmp_path):
    path = save_hybrid_model(tmp_path / "final.pt", build_model(DNN), DNN)
    tree = DNNConfig(**{**DNN.__dict__, "num_targets": 31})
    with pytest.raises(EsgdError, match="final.pt: the model has 7 outputs but the tree has 31 senones"):
        load_anchor(path, tree)
    scripted = export_torchscript(load_hybrid_model(path), tmp_path / "model.ts")
    with pytest.raises(EsgdError, match="model.ts: the model has 7 outputs but the tree has 31 senones"):
        load_anchor(scripted, tree)
    with pytest.raises(EsgdError, match="model.ts: the model has 7 outputs but the tree has 31 senones"):
        load_hybrid_model(scripted).check(DNN.input_dim, 31, kind="dnn")
    with pytest.raises(EsgdError, match="needs its nnet input description"):
        load_hybrid_model(scripted).check(DNN.input_dim, 7)


def test_input_dim_other_than_the_features_is_refused(tmp_path):
    path = save_hybrid_model(tmp_path / "final.pt", build_model(DNN), DNN)
    wider = DNNConfig(**{**DNN.__dict__, "feat_dim": 40})
    with pytest.raises(EsgdError, match="takes inputs of dim 15 but the features give 120"):
        load_anchor(path, wider)
    scripted = export_torchscript(load_hybrid_model(path), tmp_path / "model.ts")
    with pytest.raises(EsgdError, match="model.ts: the model does not take inputs of dim 120"):
        load_anchor(scripted, wider)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch.jit, the exchange format all the same
def test_foreign_architectures_and_files_are_refused(tmp_path):
    other = nn.Sequential(nn.Linear(DNN.input_dim, 7))  # right contract, other parameters
    torch.jit.save(torch.jit.script(other), str(tmp_path / "other.ts"))
    with pytest.raises(EsgdError, match="can be decoded but not anchored"):
        load_anchor(tmp_path / "other.ts", DNN)
    load_hybrid_model(tmp_path / "other.ts").check(DNN.input_dim, 7, kind="dnn")  # decodable all the same
    bigger = DNNConfig(**{**DNN.__dict__, "hidden": [9, 6]})
    path = save_hybrid_model(tmp_path / "final.pt", build_model(bigger), bigger)
    with pytest.raises(EsgdError, match="architecture"):
        load_anchor(path, DNN)
    torch.save(build_model(DNN).state_dict(), tmp_path / "bare.pt")
    with pytest.raises(EsgdError, match="bare.pt: weights do not fit the model config"):
        load_anchor(tmp_path / "bare.pt", bigger)
    with pytest.raises(EsgdError, match="model config must be given"):
        load_hybrid_model(tmp_path / "bare.pt")
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(EsgdError, match="junk.pt: not a model file"):
        load_hybrid_model(tmp_path / "junk.pt")
    with pytest.raises(EsgdError, match="missing.pt: no such model file"):
        load_anchor(tmp_path / "missing.pt", DNN)
    save_hybrid_model(tmp_path / "blstm.pt", build_model(BLSTM), BLSTM, {**NNET_INPUT, "kind": "blstm"})
    with pytest.raises(EsgdError, match="trained on other network input \\(kind 'blstm'"):
        load_anchor(tmp_path / "blstm.pt", BLSTM, NNET_INPUT)


def nnet3_text(model, config: DNNConfig, extra: str = "") -> str:
    """A Kaldi nnet3 text model (as nnet3-copy --binary=false writes it) of a FeedForwardDNN."""
    left = (config.splice - 1) // 2
    splice = ", ".join("input" if o == 0 else f"Offset(input, {o})" for o in range(-left, config.splice - left))
    kinds = {"relu": "RectifiedLinearComponent", "sigmoid": "SigmoidComponent", "tanh": "TanhComponent"}
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    nodes, components, previous = [], [], f"Append({splice})"
    for i, linear in enumerate(linears):
        rows = "\n".join("  " + " ".join(f"{v:.9g}" for v in row) for row in linear.weight.tolist())
        bias = " ".join(f"{v:.9g}" for v in linear.bias.tolist())
        components.append(f"<ComponentName> affine{i} <NaturalGradientAffineComponent> <MaxChange> 0.75 "
                          f"<LinearParams>  [\n{rows} ]\n<BiasParams>  [ {bias} ]\n<RankIn> 20 "
                          f"</NaturalGradientAffineComponent>")
        nodes.append(f"component-node name=affine{i} component=affine{i} input={previous}")
        previous = f"affine{i}"
        if i < len(config.activations):
            kind = kinds[config.activations[i]]
            components.append(f"<ComponentName> act{i} <{kind}> <Dim> {linear.out_features} <ValueAvg>  [ ] </{kind}>")
            nodes.append(f"component-node name=act{i} component=act{i} input={previous}")
            previous = f"act{i}"
    components.append(f"<ComponentName> out <LogSoftmaxComponent> <Dim> {config.num_targets} </LogSoftmaxComponent>")
    nodes.append(f"component-node name=out component=out input={previous}")
    return (f"<Nnet3> \ninput-node name=input dim={config.feat_dim}\n" + "\n".join(nodes) + extra
            + f"\noutput-node name=output input=out objective=linear\n\n<NumComponents> {len(components)}\n"
            + "\n".join(components) + "\n</Nnet3> \n")


def test_kaldi_nnet3_feed_forward_model_is_imported(tmp_path):
    torch.manual_seed(0)
    model = build_model(DNN)
    (tmp_path / "final.txt").write_text(nnet3_text(model, DNN))
    imported = load_hybrid_model(tmp_path / "final.txt")
    assert imported.config == DNN
    x = torch.randn(5, DNN.input_dim)
    assert torch.allclose(imported.module(x), model(x), atol=1e-5)
    assert torch.allclose(load_anchor(tmp_path / "final.txt", DNN)(x), model(x), atol=1e-5)
    with pytest.raises(EsgdError, match="the model has 7 outputs but the tree has 31 senones"):
        load_anchor(tmp_path / "final.txt", DNNConfig(**{**DNN.__dict__, "num_targets": 31}))
    # a splice with a gap (frames -2, 0, 1) is no FeedForwardDNN: imported as a general nnet3 network of its own
    # architecture, which decodes with its own input (4 frames) and cannot anchor a population of 3-frame DNNs
    (tmp_path / "gap.txt").write_text(nnet3_text(model, DNN).replace("Offset(input, -1), ", "Offset(input, -2), "))
    gap = load_hybrid_model(tmp_path / "gap.txt")
    assert isinstance(gap.config, Nnet3Config) and gap.config.input_dim == 4 * DNN.feat_dim
    assert (gap.nnet_input["left_context"], gap.nnet_input["right_context"]) == (2, 1)
    with pytest.raises(EsgdError, match="gap.txt: the model takes inputs of dim 20 but the features give 15"):
        load_anchor(tmp_path / "gap.txt", DNN)
