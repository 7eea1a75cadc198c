"""The YAML settings: one merge rule (a preset merged over the defaults, nested mappings key by key), dotted
overrides, and dataclass defaults that are the conf files' defaults."""
import dataclasses
from pathlib import Path

import pytest

from esgd_asr.cli.options import override_option
from esgd_asr.errors import EsgdError
from esgd_asr.models.blstm import BLSTMConfig
from esgd_asr.models.config import load_model_config
from esgd_asr.models.dnn import DNNConfig
from esgd_asr.population.config import ESGDConfig, load_esgd_config
from esgd_asr.population.newbob import NewBobConfig, load_newbob_config
from esgd_asr.population.openai_es import OpenAIESConfig, load_openai_es_config
from esgd_asr.population.popdescent import PopDescentConfig, load_popdescent_config
from esgd_asr.yaml_config import merge, nested, resolve

REPO = Path(__file__).resolve().parents[1]


def test_merge_keeps_what_the_update_does_not_name():
    base = {"a": 1, "pool": {"lr": [1, 2], "decay": 0.9}, "list": [1, 2]}
    merged = merge(base, {"pool": {"decay": 0.8}, "list": [3]})
    assert merged == {"a": 1, "pool": {"lr": [1, 2], "decay": 0.8}, "list": [3]}
    assert base["pool"]["decay"] == 0.9  # neither input changes
    assert nested({"pool.lr.sgd": 1, "mu": 2}) == {"pool": {"lr": {"sgd": 1}}, "mu": 2}


def test_presets_merge_in_order_then_overrides():
    presets = {"p": {"x": 2, "sub": {"a": 2}}, "q": {"x": 3}}
    values = resolve({"x": 1, "y": 1, "sub": {"a": 1, "b": 1}}, presets, "p,q", {"sub.b": 5}, "where")
    assert values == {"x": 3, "y": 1, "sub": {"a": 2, "b": 5}}
    with pytest.raises(EsgdError, match="where: no preset 'r'"):
        resolve({}, presets, "r", None, "where")
    assert resolve({"x": 1}, presets, "r", None, "where", missing_preset_ok=True) == {"x": 1}


def test_swb300_preset_keeps_the_default_context_frames():
    default = load_model_config(REPO / "conf/blstm.yaml")
    swb300 = load_model_config(REPO / "conf/blstm.yaml", "swb300")
    assert (swb300.chunk_left_context, swb300.chunk_right_context) == (10, 10)
    assert (swb300.chunk_left_context, swb300.chunk_right_context) == \
        (default.chunk_left_context, default.chunk_right_context)
    assert (swb300.num_layers, swb300.cells, swb300.num_targets) == (4, 512, 32000)
    assert load_model_config(REPO / "conf/dnn.yaml", "bn50", hidden=[8], activations=["relu"]).hidden == [8]


def test_train_schedule_presets_merge_over_the_default(tmp_path):
    assert load_newbob_config(REPO / "conf/blstm.yaml", "swb300") == \
        NewBobConfig(lr=0.025, batch_size=128, max_epochs=20, min_lr=1e-6, halving_factor=0.5)
    assert load_newbob_config(REPO / "conf/dnn.yaml", "no_such_preset", lr=None, max_epochs=3).max_epochs == 3
    bad = tmp_path / "model.yaml"
    bad.write_text("type: dnn\ndefault: {}\ntrain: {default: {lr: 1.0, halving: 0.5}}\n")
    with pytest.raises(EsgdError, match="unknown option 'halving'"):
        load_newbob_config(bad)


def test_esgd_overrides_are_dotted_and_nested_mappings_merge():
    config = load_esgd_config(REPO / "conf/esgd.yaml", "anchors,blstm_batches",
                              dict(map(override_option, ["pool.lr_decay=0.8", "finetune.lr=5e-4", "mu=6"])))
    assert (config.mu, config.rho, config.fitness_chunk, config.pool.lr_decay) == (6, 3, 128, 0.8)
    assert config.pool.lr_ranges == ESGDConfig().pool.lr_ranges  # the default's, untouched by the presets
    assert (config.finetune.lr, config.finetune.batch_size, config.finetune.max_epochs) == (5e-4, 16, 1)
    paper = load_esgd_config(REPO / "conf/esgd.yaml", "bn50")
    assert (paper.mu, paper.offspring, paper.generations, paper.epoch_frames, paper.finetune.max_epochs) == \
        (100, 400, 15, None, 5)
    with pytest.raises(Exception, match="expected key=value"):
        override_option("mu")


@pytest.mark.parametrize("conf, load, config_class", [
    ("conf/dnn.yaml", load_model_config, DNNConfig), ("conf/blstm.yaml", load_model_config, BLSTMConfig),
    ("conf/dnn.yaml", load_newbob_config, NewBobConfig), ("conf/blstm.yaml", load_newbob_config, NewBobConfig),
    ("conf/esgd.yaml", load_esgd_config, ESGDConfig), ("conf/esgd.yaml", load_popdescent_config, PopDescentConfig),
    ("conf/esgd.yaml", load_openai_es_config, OpenAIESConfig)])
def test_dataclass_defaults_are_the_conf_defaults(conf, load, config_class):
    """Defaults in one place: the recipe's conf file says what the dataclass says (the papers' scale is a preset)."""
    assert dataclasses.asdict(load(REPO / conf)) == dataclasses.asdict(config_class())
