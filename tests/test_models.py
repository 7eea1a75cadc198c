"""FeedForwardDNN and BiLSTM: shapes, paper presets, the BiLSTM equals nn.LSTM, config errors."""
import pytest
import torch
from torch import nn

from esgd_asr.errors import EsgdError
from esgd_asr.models import BiLSTM, BLSTMConfig, DNNConfig, FeedForwardDNN, build_model, load_model_config


def test_dnn_layers_activations_and_logits():
    config = load_model_config("conf/dnn.yaml", "bn50")
    model = build_model(config)
    linear = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linear] == [
        (360, 1024), (1024, 1024), (1024, 1024), (1024, 1024), (1024, 1024), (1024, 512), (512, 5000)]
    kinds = [type(m).__name__ for m in model.hidden if not isinstance(m, nn.Linear)]
    assert kinds == ["ReLU"] * 3 + ["Sigmoid"] * 3
    small = build_model(load_model_config("conf/dnn.yaml"))
    assert small(torch.randn(5, 360)).shape == (5, 500)


def test_blstm_preset_shape_and_per_frame_logits():
    config = load_model_config("conf/blstm.yaml", "swb300")
    assert (config.input_dim, config.num_layers, config.cells, config.bottleneck, config.num_targets, config.chunk) == (
        140, 4, 512, 256, 32000, 21)
    model = build_model(load_model_config("conf/blstm.yaml", num_targets=7))
    assert model(torch.randn(3, 21, 140)).shape == (3, 21, 7)


def test_blstm_loads_model_files_of_the_per_direction_layout():
    torch.manual_seed(0)
    config = BLSTMConfig(input_dim=6, num_layers=2, cells=5, bottleneck=4, num_targets=3, chunk=9)
    model = BiLSTM(config)
    legacy = {}   # the keys final.pt files had when each direction was an nn.Linear pair
    for name, value in model.state_dict().items():
        if name.startswith("lstm."):
            kind, gates, layer = name[5:].split("_")[:3]
            direction = 1 if name.endswith("_reverse") else 0
            name = f"layers.{layer[1:]}.{direction}.{'input' if gates == 'ih' else 'hidden'}_gates.{kind}"
        legacy[name] = value.clone()
    assert "layers.1.1.hidden_gates.bias" in legacy and len(legacy) == len(model.state_dict())
    loaded = BiLSTM(config)
    loaded.load_state_dict(legacy)
    features = torch.randn(4, 9, 6)
    assert torch.equal(loaded(features), model(features))
    assert torch.equal(torch.jit.script(loaded)(features), model(features))


def test_bad_model_configs_name_the_option(tmp_path):
    with pytest.raises(EsgdError, match="unknown activation 'gelu'"):
        DNNConfig(hidden=[4], activations=["gelu"])
    with pytest.raises(EsgdError, match="2 hidden sizes but 1 activations"):
        DNNConfig(hidden=[4, 4], activations=["relu"])
    with pytest.raises(EsgdError, match="no preset 'bn51'"):
        load_model_config("conf/dnn.yaml", "bn51")
    bad = tmp_path / "bad.yaml"
    bad.write_text("type: dnn\ndefault: {hidden_units: [3]}\n")
    with pytest.raises(EsgdError, match="unknown dnn option 'hidden_units'"):
        load_model_config(bad)
    with pytest.raises(EsgdError, match="cannot read model config"):
        load_model_config(tmp_path / "missing.yaml")
    assert isinstance(build_model(DNNConfig()), FeedForwardDNN)
