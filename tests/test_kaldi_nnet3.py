"""Kaldi nnet3 import: outputs equal to Kaldi's own on public test networks (tests/data/kaldi_nnet3/README.md
names their sources), equal to an independent per-frame reference evaluator on a network using every supported
descriptor and component, and each bad input refused with one line."""
import gzip
from pathlib import Path

import numpy as np
import pytest
import torch

from esgd_asr.errors import EsgdError
from esgd_asr.hybrid.model_file import load_anchor, load_hybrid_model
from esgd_asr.models.dnn import FeedForwardDNN
from esgd_asr.models.kaldi_nnet3 import (Nnet3Network, fold_fixed_affine, nnet3_network_text, parse_nnet3_text,
                                         read_nnet3_graph, read_nnet3_model)
from nnet3_fixture import every_feature_text, matrix, vector

DATA = Path(__file__).parent / "data" / "kaldi_nnet3"
# case: frame-subsampling factor of its nnet3-compute run
TRACT = {"fixed_affine_40x10_T40_S3": 3, "ngaffine_17x3_T29_S1_o-3_0_3": 1, "relu_D10_T11": 1,
         "renorm_tgt1.0_D20_T35": 1, "renorm_tgt1.0_D24_T32_input0": 1, "delay_3_D7_T17_S1": 1}


def read_text_ark(path: Path) -> np.ndarray:
    """The one matrix of a Kaldi text archive."""
    body = path.read_text().split("[", 1)[1].rsplit("]", 1)[0]
    return np.array([row.split() for row in body.strip().splitlines()], dtype=np.float64)


def kaldi_padded(x: np.ndarray, network: Nnet3Network) -> torch.Tensor:
    """nnet3-compute's input: the first and last frames repeated over the network's context."""
    left, right = np.repeat(x[:1], network.left_context, 0), np.repeat(x[-1:], network.right_context, 0)
    return torch.from_numpy(np.concatenate([left, x, right]).astype(np.float32))[None]


@pytest.mark.parametrize("case", sorted(TRACT))
def test_unit_networks_compute_what_kaldi_computed(case):
    network = Nnet3Network(read_nnet3_graph(DATA / "tract" / case / "model.raw.txt"))
    x, expected = (read_text_ark(DATA / "tract" / case / name) for name in ("input.ark", "output.ark"))
    with torch.no_grad():
        out = network(kaldi_padded(x, network))[0, ::TRACT[case]].double().numpy()
    assert out.shape == expected.shape
    assert np.abs(out - expected).max() <= 2e-6 * max(1.0, np.abs(expected).max())  # ark text has 7 digits


def swbd(name: str, tmp_path: Path) -> tuple[Path, np.ndarray, np.ndarray]:
    """The model file, input frames with the i-vector appended to each, and Kaldi's output (64 columns)."""
    model = tmp_path / f"{name}.txt"
    model.write_bytes(gzip.decompress((DATA / name / "final.txt.gz").read_bytes()))
    x = np.loadtxt(gzip.open(DATA / name / "input.txt.gz"))
    ivector = np.loadtxt(gzip.open(DATA / name / "ivector.txt.gz"))
    return model, np.concatenate([x, np.repeat(ivector[None], len(x), 0)], 1), np.loadtxt(DATA / name / "output.txt")


@pytest.mark.parametrize("name,context", [("swbd_tdnn_7p", 32), ("swbd_tdnn_7q", 34)])
def test_swbd_tdnn_models_compute_what_kaldi_computed(name, context, tmp_path):
    """Real recipe topologies: LDA + i-vector input (ReplaceIndex), factored / TDNN-F layers, batch norm, skip
    connections to earlier layers, Sum(Scale()) bypasses; whole-window and per-frame (spliced) evaluation."""
    model, frames, expected = swbd(name, tmp_path)
    network = Nnet3Network(read_nnet3_graph(model), "output")
    assert (network.left_context, network.right_context, network.input_names) == (context, context,
                                                                                   ["input", "ivector"])
    x = torch.from_numpy(frames).float()
    with torch.no_grad():
        whole = network(x[None])[0, ::3].numpy()
        spliced = network(torch.stack([x[i:i + network.splice].reshape(-1)
                                       for i in range(0, len(x) - network.splice + 1, 3)])).numpy()
    assert whole.shape == spliced.shape == expected.shape
    scale = np.abs(expected).max()
    assert np.abs(whole - expected).max() < 2e-6 * scale and np.abs(spliced - expected).max() < 2e-6 * scale
    # written back as nnet3 text (the output node's graph only), it reads back to the same outputs
    written = nnet3_network_text(network)
    assert written.count("output-node") == 1 and model.read_text().count("output-node") == 2
    with torch.no_grad():
        again = Nnet3Network(parse_nnet3_text(written, "written"))(x[None])[0, ::3].numpy()
    assert np.abs(again - expected).max() < 2e-6 * scale
    with pytest.raises(EsgdError, match=f"{name}.txt: output-node 'output' does not end in a softmax or "
                                        "log-softmax \\(a chain model"):
        load_hybrid_model(model)


# ---- an independent reference: node values frame by frame, straight from the descriptor definitions ----------

def reference_outputs(graph, output: str, inputs: dict[str, np.ndarray], first: int, frames: int) -> np.ndarray:
    """Output node values at times 0 .. frames-1 when input row i is time i + first; a descriptor part outside
    the input is undefined (IfDefined makes it zeros)."""
    dims = Nnet3Network(graph, output).dims
    memo = {}

    def descriptor(d, t):
        if d.op == "node":
            return node(d.name, t)
        if d.op == "offset":
            return descriptor(d.parts[0], t + int(d.value))
        if d.op == "replace":
            return descriptor(d.parts[0], int(d.value))
        if d.op == "ifdefined":
            value = descriptor(d.parts[0], t)
            inner = d.parts[0].parts[0] if d.parts[0].op == "offset" else d.parts[0]
            return np.zeros(dims[inner.name]) if value is None else value
        parts = [descriptor(p, t) for p in d.parts]
        if any(p is None for p in parts):
            return None
        if d.op == "append":
            return np.concatenate(parts)
        return d.value * parts[0] if d.op == "scale" else np.sum(parts, axis=0)

    def node(name, t):
        if name in inputs:
            row = t - first
            return inputs[name][row] if 0 <= row < len(inputs[name]) else None
        if (name, t) not in memo:
            component_name, d = graph.nodes[name]
            c = graph.components[component_name]
            offsets = [int(v) for v in c.matrix("TimeOffsets", "").reshape(-1)] if "TimeOffsets" in c.fields else [0]
            parts = [descriptor(d, t + o) for o in offsets]
            memo[name, t] = None if any(p is None for p in parts) else apply(c, np.concatenate(parts))
        return memo[name, t]

    def apply(c, x):
        matrix = c.matrix("Params" if c.kind == "LinearComponent" else "LinearParams", "")
        if matrix is not None:
            bias = c.matrix("BiasParams", "")
            return matrix.astype(np.float64) @ x + (0 if bias is None or bias.size == 0 else bias)
        if c.kind == "BatchNormComponent":
            mean, var = c.matrix("StatsMean", ""), c.matrix("StatsVar", "")
            blocks = x.reshape(-1, len(mean))
            return ((blocks - mean) / np.sqrt(var + float(c.fields["Epsilon"])) * float(c.fields["TargetRms"])
                    ).reshape(-1)
        if c.kind == "NormalizeComponent":
            return x * float(c.fields["TargetRms"]) / np.sqrt(max(np.mean(x * x), 2.0 ** -66))
        if c.kind == "SoftmaxComponent":
            return np.exp(x - x.max()) / np.exp(x - x.max()).sum()
        return {"RectifiedLinearComponent": lambda v: np.maximum(v, 0), "TanhComponent": np.tanh,
                "SigmoidComponent": lambda v: 1 / (1 + np.exp(-v)), "NoOpComponent": lambda v: v,
                "GeneralDropoutComponent": lambda v: v}[c.kind](x)

    return np.stack([descriptor(graph.outputs[output][0], t) for t in range(frames)])


def test_every_feature_agrees_with_the_reference_evaluator(tmp_path):
    graph = parse_nnet3_text(every_feature_text(), "every.txt")
    network = Nnet3Network(graph).double()
    assert (network.left_context, network.right_context, network.frame_dim) == (4, 4, 7)  # IfDefined: no context
    rng = np.random.default_rng(1)
    x, ivectors = rng.normal(0, 1, (30, 4)), rng.normal(0, 1, (30, 3))
    with torch.no_grad():
        out = network(torch.from_numpy(np.concatenate([x, ivectors], 1))[None])[0].numpy()
    expected = np.log(reference_outputs(graph, "output", {"input": x, "ivector": ivectors}, -4, 30 - 8))
    assert np.abs(out - expected).max() < 1e-5  # float32 parameters; the final softmax computed as its log
    # at time 0, IfDefined(Offset(relu1, -4)) needs input frame -5, outside the window: zeros (one frame more
    # of input would have changed the output)
    earlier = {"input": np.concatenate([x[:1], x]), "ivector": np.concatenate([ivectors[:1], ivectors])}
    assert np.abs(np.log(reference_outputs(graph, "output", earlier, -5, 1)) - out[:1]).max() > 1e-3
    # imported as an acoustic model: not a plain DNN, so the FixedAffine stays a layer of its own whose weights
    # are buffers (fixed in a population of it); the same outputs, decodable input
    (tmp_path / "every.txt").write_text(every_feature_text())
    config, module, nnet_input = read_nnet3_model(tmp_path / "every.txt")
    assert config is None and module.layers[module.index["lda"]].fixed and "lda" in fold_fixed_affine(graph).folded
    assert {"layers.0.linear.weight", "layers.0.linear.bias"} <= dict(module.named_buffers()).keys()
    assert (nnet_input["left_context"], nnet_input["right_context"], nnet_input["ivector_period"]) == (4, 4, 10)
    with torch.no_grad():
        imported = module.double()(torch.from_numpy(np.concatenate([x, ivectors], 1))[None])[0].numpy()
    assert np.abs(imported - expected).max() < 1e-5


def test_plain_dnn_becomes_a_feed_forward_dnn_with_lda_folded(tmp_path):
    """splice -> LDA (FixedAffine) -> affine/relu -> affine -> softmax: a FeedForwardDNN that can anchor a DNN."""
    rng = np.random.default_rng(2)
    text = ("<Nnet3> \ninput-node name=input dim=3\n"
            "component-node name=lda input=Append(Offset(input, -1), input, Offset(input, 1)) component=lda\n"
            "component-node name=a1 component=a1 input=lda\ncomponent-node name=r1 component=r1 input=a1\n"
            "component-node name=a2 component=a2 input=r1\ncomponent-node name=sm component=sm input=a2\n"
            "output-node name=output input=sm objective=linear\n\n<NumComponents> 5 \n"
            f"<ComponentName> lda <FixedAffineComponent> <LinearParams>  {matrix(rng, 9, 9)}\n<BiasParams>  "
            f"{vector(rng.normal(0, 1, 9))}\n</FixedAffineComponent>\n"
            f"<ComponentName> a1 <AffineComponent> <LinearParams>  {matrix(rng, 8, 9)}\n<BiasParams>  "
            f"{vector(rng.normal(0, 1, 8))}\n</AffineComponent>\n"
            "<ComponentName> r1 <RectifiedLinearComponent> <Dim> 8 </RectifiedLinearComponent>\n"
            f"<ComponentName> a2 <NaturalGradientAffineComponent> <LinearParams>  {matrix(rng, 5, 8)}\n"
            f"<BiasParams>  {vector(rng.normal(0, 1, 5))}\n</NaturalGradientAffineComponent>\n"
            "<ComponentName> sm <SoftmaxComponent> <Dim> 5 </SoftmaxComponent>\n</Nnet3> \n")
    (tmp_path / "dnn.txt").write_text(text)
    config, module, nnet_input = read_nnet3_model(tmp_path / "dnn.txt")
    assert isinstance(module, FeedForwardDNN) and (config.splice, config.hidden, config.num_targets) == (3, [8], 5)
    x = np.random.default_rng(3).normal(0, 1, (12, 3))
    expected = np.log(reference_outputs(parse_nnet3_text(text, "dnn.txt"), "output", {"input": x}, -1, 10))
    windows = torch.from_numpy(np.stack([x[i:i + 3].reshape(-1) for i in range(10)])).float()
    with torch.no_grad():
        assert np.abs(torch.log_softmax(module(windows), -1).numpy() - expected).max() < 1e-5
    assert torch.equal(load_anchor(tmp_path / "dnn.txt", config)(windows), module(windows))
    model = load_hybrid_model(tmp_path / "dnn.txt")
    assert model.nnet_input == nnet_input and model.nnet_input["global_stats"][0] == (0.0,) * 3 + (1.0,)


@pytest.mark.parametrize("content,message", [
    (b"\0B<Nnet3> ", "a Kaldi binary <Nnet3> model; convert it to text first: nnet3-copy --binary=false "),
    (b"\0B<TransitionModel> <Topology> " + bytes(200) + b"<Nnet3> ",
     "a Kaldi binary <TransitionModel> model; convert it to text first: nnet3-am-copy --raw=true --binary=false "),
    (b"\0B<TransitionModel> <Topology> " + bytes(200) + b"<DIMENSION> ", "a Kaldi binary model without an nnet3"),
    (b"<TransitionModel> \n<Topology> \n</Topology> \n</TransitionModel> \n<DIMENSION> 39 ", "no <Nnet3>")])
def test_binary_and_non_nnet3_models_are_refused_with_the_reason(content, message, tmp_path):
    (tmp_path / "final.mdl").write_bytes(content + bytes(range(200)))
    with pytest.raises(EsgdError, match=f"final.mdl: {message}"):
        load_hybrid_model(tmp_path / "final.mdl")


def test_text_acoustic_model_is_read_past_its_transition_model(tmp_path):
    text = every_feature_text()
    (tmp_path / "final.mdl").write_text("<TransitionModel> \n<Topology> \n</Topology> \n</TransitionModel> \n" + text
                                        + "[ 0.1 0.9 ]\n")
    assert load_hybrid_model(tmp_path / "final.mdl").nnet_input["left_context"] == 4


@pytest.mark.parametrize("edit,message", [
    (("<SigmoidComponent>", "<LstmNonlinearityComponent>", "</SigmoidComponent>", "</LstmNonlinearityComponent>",
      "<TanhComponent>", "<PnormComponent>", "</TanhComponent>", "</PnormComponent>"),
     "unsupported components: sig4 \\(LstmNonlinearityComponent\\), tanh4 \\(PnormComponent\\)$"),
    (("Offset(tdnn2, 2)", "Round(tdnn2, 3)"), "descriptor Round\\(...\\) is not supported"),
    (("input=Sum(Scale(0.66, bn1), lin3)", "input=Sum(Scale(0.66, bn1), IfDefined(Offset(drop3, -1)))"),
     "recurrent connection"),
    (("input=Append(sig4, tanh4, bn1)", "input=Append(sig4, tanh4)"), "component-node out: its input has dim 17"),
    (("component=softmax input=out", "component=softmax input=nowhere"), "unknown node 'nowhere'"),
    (("<NormalizeComponent> <InputDim> 12 <TargetRms> 0.8 <AddLogStddev> F",
      "<NormalizeComponent> <InputDim> 12 <TargetRms> 0.8 <AddLogStddev> T"), "<AddLogStddev> T is not supported"),
])
def test_bad_networks_are_refused_in_one_line(edit, message, tmp_path):
    text = every_feature_text()
    for old, new in zip(edit[0::2], edit[1::2]):
        text = text.replace(old, new)
    (tmp_path / "bad.txt").write_text(text)
    with pytest.raises(EsgdError, match=message) as error:
        load_hybrid_model(tmp_path / "bad.txt")
    assert str(error.value).startswith(str(tmp_path / "bad.txt")) and "\n" not in str(error.value)


def test_missing_ivector_input_and_feature_dim_are_named(tmp_path):
    (tmp_path / "every.txt").write_text(every_feature_text())
    anchor = load_hybrid_model(tmp_path / "every.txt")
    anchor.check(9 * 7, 7)
    with pytest.raises(EsgdError, match="every.txt: the model takes inputs of dim 63 but the features give 36"):
        anchor.check(9 * 4, 7)  # features without the i-vector
