"""The population trainers by name (`esgd-train-esgd --algorithm NAME`) and their settings from conf/esgd.yaml.

esgd, no-evolution and population (the papers' baselines) read `default` (or --esgd-preset); anchored reads the
preset `anchors`, iterated the preset `iterated` and inserted (ESGD with the baseline always inserted, the PTB
variant) the preset `relaxed_backoff` unless another is given; popdescent and openai-es read their
own sections. Every trainer takes (settings, model factory, train, valid, device); the anchored ones an anchor too.
"""
from esgd_asr.errors import EsgdError
from esgd_asr.population.anchors import AnchoredESGD
from esgd_asr.population.baselines import NoEvolutionESGD, PopulationBaseline
from esgd_asr.population.config import ESGDConfig, load_esgd_config
from esgd_asr.population.esgd import ESGD
from esgd_asr.population.inserted import BaselineInsertedESGD
from esgd_asr.population.openai_es import OpenAIES, load_openai_es_config
from esgd_asr.population.popdescent import PopulationDescent, load_popdescent_config

# name: (trainer, preset of conf/esgd.yaml read by default; None: a section of its own)
ALGORITHMS = {
    "esgd": (ESGD, "default"),
    "no-evolution": (NoEvolutionESGD, "default"),
    "population": (PopulationBaseline, "default"),
    "anchored": (AnchoredESGD, "anchors"),
    "iterated": (AnchoredESGD, "iterated"),
    "inserted": (BaselineInsertedESGD, "relaxed_backoff"),
    "popdescent": (PopulationDescent, None),
    "openai-es": (OpenAIES, None),
}
ANCHORED = ("anchored", "iterated", "inserted")   # they take a model: the anchor or the baseline


def check_name(name: str) -> None:
    if name not in ALGORITHMS:
        raise EsgdError(f"--algorithm: unknown algorithm {name!r} (choose from {', '.join(ALGORITHMS)})")


def load_settings(name: str, path: str, preset: str | None = None, overrides: dict | None = None):
    """The settings of algorithm `name` from the config file: a preset (ESGD family) or its own section."""
    check_name(name)
    default_preset = ALGORITHMS[name][1]
    if default_preset is None:
        if preset is not None:
            raise EsgdError(f"--esgd-preset: {name} reads the '{name.replace('-', '_')}' section, it has no presets")
        return (load_popdescent_config if name == "popdescent" else load_openai_es_config)(path, overrides)
    settings = load_esgd_config(path, preset or default_preset, overrides)
    if name == "iterated" and settings.rounds < 2:
        raise EsgdError(f"{path}: --algorithm iterated needs rounds >= 2 (got {settings.rounds}); "
                        "one round is --algorithm anchored")
    return settings


def check_anchor(name: str, has_anchor: bool) -> None:
    """Anchored, iterated and inserted need an anchor (inserted: the baseline); the others take none."""
    check_name(name)
    if name in ANCHORED and not has_anchor:
        raise EsgdError(f"--algorithm {name} needs an anchor model (--anchor)")
    if name not in ANCHORED and has_anchor:
        raise EsgdError(f"--anchor is used by --algorithm {' or '.join(ANCHORED)} only, not {name}")


def build_algorithm(name: str, settings, factory, train, valid, anchor=None, device="cpu"):
    """A trainer ready for population.driver.run_algorithm; `anchor` (an nn.Module) for anchored / iterated /
    inserted only."""
    check_anchor(name, anchor is not None)
    trainer = ALGORITHMS[name][0]
    if isinstance(settings, ESGDConfig) != (ALGORITHMS[name][1] is not None):
        raise EsgdError(f"{name}: settings of type {type(settings).__name__} do not fit {trainer.__name__}")
    if name in ANCHORED:
        return trainer(settings, factory, train, valid, anchor, device)
    return trainer(settings, factory, train, valid, device)
