"""The YAML settings files (conf/dnn.yaml, conf/blstm.yaml, conf/esgd.yaml, egs/*/conf/*.yaml) and their one merge
rule: a mapping merged over another keeps every key it does not name and merges nested mappings key by key; any
other value replaces. Presets are merged over the defaults in the order named ("anchors,blstm_batches"), then the
command line's dotted overrides (`pool.lr_decay=0.8`), so a preset never drops a default it does not mention.

    document = read_yaml("conf/esgd.yaml", "esgd config")
    values = resolve(document["default"], document.get("presets"), "anchors", {"mu": 10}, "conf/esgd.yaml")
    config = dataclass_from_dict(ESGDConfig, values, "conf/esgd.yaml")
"""
from __future__ import annotations

import dataclasses
import typing
from pathlib import Path

import yaml

from esgd_asr.errors import EsgdError


def read_yaml(path: str | Path, what: str) -> dict:
    """The mapping of a YAML file; an unreadable file or another document is a one-line error naming `what`."""
    try:
        document = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as err:
        raise EsgdError(f"{path}: cannot read {what} ({err.__class__.__name__})") from err
    if not isinstance(document, dict):
        raise EsgdError(f"{path}: a {what} must be a mapping")
    return document


def merge(base: dict, update: dict) -> dict:
    """`update` merged over `base` (the module's rule); neither is changed."""
    merged = dict(base)
    for key, value in update.items():
        both_mappings = isinstance(value, dict) and isinstance(merged.get(key), dict)
        merged[key] = merge(merged[key], value) if both_mappings else value
    return merged


def nested(overrides: dict) -> dict:
    """Dotted overrides as nested mappings: {"pool.lr_decay": 0.8} -> {"pool": {"lr_decay": 0.8}}."""
    out: dict = {}
    for dotted, value in overrides.items():
        *parents, leaf = dotted.split(".")
        update = {leaf: value}
        for parent in reversed(parents):
            update = {parent: update}
        out = merge(out, update)
    return out


def resolve(defaults: dict, presets: dict | None, preset: str, overrides: dict | None, where: str,
            missing_preset_ok: bool = False) -> dict:
    """`defaults`, then each preset of the comma-separated `preset` ("default" names none) merged over it, then the
    dotted `overrides`. An unknown preset is an error unless `missing_preset_ok`."""
    values, presets = dict(defaults or {}), presets or {}
    for name in preset.split(","):
        if name == "default" or (missing_preset_ok and name not in presets):
            continue
        if name not in presets:
            raise EsgdError(f"{where}: no preset {name!r} (have: default, {', '.join(sorted(presets))})")
        values = merge(values, presets[name])
    return merge(values, nested(overrides or {}))


def yaml_numbers(value):
    """Numbers that YAML 1.1 reads as text (5e-4, 1e3: no dot or no signed exponent) as floats, recursively."""
    if isinstance(value, str):
        try:
            return float(value) if value.strip().lower() not in ("nan", "inf", "-inf", "infinity") else value
        except ValueError:
            return value
    if isinstance(value, list):
        return [yaml_numbers(v) for v in value]
    if isinstance(value, dict):
        return {k: yaml_numbers(v) for k, v in value.items()}
    return value


def dataclass_from_dict(config_class, values: dict, where: str):
    """`config_class` built from `values`; a field whose type is a dataclass takes a mapping (merged over that
    field's default); unknown keys and bad values are one-line errors naming `where`."""
    hints = typing.get_type_hints(config_class)
    known = {f.name: f for f in dataclasses.fields(config_class)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise EsgdError(f"{where}: unknown option {unknown[0]!r}")
    built = {}
    for name, value in values.items():
        field_type = hints[name]
        if dataclasses.is_dataclass(field_type):
            if not isinstance(value, dict):
                raise EsgdError(f"{where}: {name} must be a mapping")
            default = known[name].default_factory() if known[name].default_factory is not dataclasses.MISSING \
                else field_type()
            built[name] = dataclass_from_dict(field_type, merge(dataclasses.asdict(default), value),
                                              f"{where}: {name}")
        else:
            built[name] = yaml_numbers(value)
    try:
        return config_class(**built)
    except TypeError as err:
        raise EsgdError(f"{where}: {err}") from err
