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


def test_blstm_layers_compute_what_nn_lstm_computes():
    torch.manual_seed(0)
    config = BLSTMConfig(input_dim=6, num_layers=2, cells=5, bottleneck=4, num_targets=3, chunk=9)
    model = BiLSTM(config)
    reference = nn.LSTM(6, 5, num_layers=2, bidirectional=True, batch_first=True)
    with torch.no_grad():
        for layer, directions in enumerate(model.layers):
            for direction, suffix in zip(directions, ["", "_reverse"]):
                getattr(reference, f"weight_ih_l{layer}{suffix}").copy_(direction.input_gates.weight)
                getattr(reference, f"bias_ih_l{layer}{suffix}").copy_(direction.input_gates.bias)
                getattr(reference, f"weight_hh_l{layer}{suffix}").copy_(direction.hidden_gates.weight)
                getattr(reference, f"bias_hh_l{layer}{suffix}").copy_(direction.hidden_gates.bias)
    features = torch.randn(4, 9, 6)
    expected = model.output(model.bottleneck(reference(features)[0]))
    assert torch.allclose(model(features), expected, atol=1e-5)


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
