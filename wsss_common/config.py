"""The one place config values get their defaults and their checks: workflow/schemas/*.schema.yaml.

- ``validate_config`` (the workflow, when it loads) validates the whole config in place and fills in every default.
- ``load_section`` (every stage CLI) reads the JSON of its section that the rule passed, validates it against the
  same schema and fills in the same defaults.

Both use ``fill_defaults``, so a default can never differ between the workflow and a CLI run by hand, and every
error names the key (``config key bas.lr: 'x' is not of type 'number'``).
"""
from __future__ import annotations

import copy
import json
from pathlib import Path

import yaml
from jsonschema import Draft202012Validator

STAGE_SECTIONS = ("bas", "seeds", "irn", "segment")
SCHEMA_DIR = Path(__file__).resolve().parents[1] / "workflow" / "schemas"


class ConfigError(ValueError):
    pass


def load_schema(path: str | Path) -> dict:
    with open(path) as f:
        return yaml.safe_load(f)


def fill_defaults(schema: dict, value):
    """Fill in (in place) every ``default`` of ``schema`` missing from ``value``, recursively into sub-objects;
    defaults are deep-copied, so a filled config never shares a mutable value with the schema."""
    if isinstance(value, dict) and "properties" in schema:
        for key, sub in schema["properties"].items():
            if key not in value and "default" in sub:
                value[key] = copy.deepcopy(sub["default"])
            if key in value:
                fill_defaults(sub, value[key])
    return value


def _check(instance, schema: dict, prefix: str) -> None:
    errors = sorted(Draft202012Validator(schema).iter_errors(instance), key=lambda e: list(e.absolute_path))
    if errors:
        lines = []
        for e in errors:
            key = ".".join([prefix] + [str(p) for p in e.absolute_path]).strip(".") or "(top level)"
            lines.append(f"config key {key}: {e.message}")
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(lines))


def section_schema(section: str, schema_dir: str | Path = SCHEMA_DIR) -> dict:
    """The schema of ``section``: a stage (``bas``, ``seeds``, ``irn``, ``segment``: its own file) or a dotted path
    into config.schema.yaml (``data.synthetic``)."""
    schema_dir = Path(schema_dir)
    if section in STAGE_SECTIONS:
        return load_schema(schema_dir / f"{section}.schema.yaml")
    schema = load_schema(schema_dir / "config.schema.yaml")
    for part in section.split("."):
        try:
            schema = schema["properties"][part]
        except KeyError:
            raise ConfigError(f"no schema for config section {section!r}") from None
    return schema


def validate_config(config: dict, schema_dir: str | Path = SCHEMA_DIR) -> dict:
    """Validate (in place, filling defaults) the top level and each stage section."""
    schema_dir = Path(schema_dir)
    top = load_schema(schema_dir / "config.schema.yaml")
    fill_defaults(top, config)
    _check(config, top, "")
    for section in STAGE_SECTIONS:
        schema = section_schema(section, schema_dir)
        if config.get(section) is None:
            config[section] = {}
        fill_defaults(schema, config[section])
        _check(config[section], schema, section)
    return config


def load_section(section: str, settings: str | dict, schema_dir: str | Path = SCHEMA_DIR) -> dict:
    """How a stage CLI reads its ``--settings``: the JSON object (or dict) of config section ``section`` (or the
    part of it the rule passes), validated against the section's schema, defaults filled in. Returns a new dict."""
    if isinstance(settings, str):
        try:
            settings = json.loads(settings)
        except json.JSONDecodeError as e:
            raise ConfigError(f"--settings of {section} is not valid JSON: {e}") from None
    if not isinstance(settings, dict):
        raise ConfigError(f"--settings must be a JSON object (the config section {section})")
    schema = section_schema(section, schema_dir)
    value = fill_defaults(schema, copy.deepcopy(settings))
    _check(value, schema, section)
    return value


def pretraining_synthetic(config: dict, schema_dir: str | Path = SCHEMA_DIR) -> dict:
    """The generator settings of the pretraining set: ``data.synthetic`` with ``pretraining.synthetic`` over it,
    validated as ``data.synthetic`` is (an error names ``pretraining.synthetic.<key>``). Its seed must differ from
    the main set's: the stand-in for ImageNet is pretrained on other images than those BAS learns from."""
    schema = section_schema("data.synthetic", schema_dir)
    main = fill_defaults(schema, copy.deepcopy(config["data"].get("synthetic") or {}))
    changes = config.get("pretraining", {}).get("synthetic", {})
    unknown = sorted(set(changes) - set(schema["properties"]))
    if unknown:
        raise ConfigError(f"config key pretraining.synthetic.{unknown[0]}: not a data.synthetic key "
                          f"(known: {', '.join(schema['properties'])})")
    merged = {**main, **copy.deepcopy(changes)}
    _check(merged, schema, "pretraining.synthetic")
    if merged["seed"] == main["seed"]:
        raise ConfigError(f"config key pretraining.synthetic.seed: {merged['seed']} is data.synthetic.seed too; the "
                          "pretraining set must be other images than the main set (give another seed)")
    return merged


def pretrained_weights_path(config: dict) -> str:
    """Where the workflow writes the pretraining's ResNet (a torchvision-format state dict)."""
    return f"results/{config['experiment']}/pretraining/pretrained_resnet{config['bas']['depth']}.pth"


def initial_weights(config: dict) -> str | None:
    """The file every stage that starts from ImageNet starts from: ``imagenet_weights``, the workflow's pretrained
    stand-in when ``pretraining.enabled``, or None (random init). ``config`` is validated (defaults filled)."""
    if config.get("pretraining", {}).get("enabled"):
        return pretrained_weights_path(config)
    return config.get("imagenet_weights")
