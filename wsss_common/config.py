"""Validate the workflow config against workflow/schemas/*.schema.yaml, fill in schema defaults, and name the
offending key in every error (``config key bas.lr: 'x' is not of type 'number'``)."""
from __future__ import annotations

from pathlib import Path

import yaml
from jsonschema import Draft202012Validator, validators

STAGE_SECTIONS = ("bas", "seeds", "irn", "segment")


class ConfigError(ValueError):
    pass


def _with_defaults(cls):
    validate_properties = cls.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for name, sub in properties.items():
                if "default" in sub and name not in instance:
                    instance[name] = sub["default"]  # deep enough: defaults are plain values
        yield from validate_properties(validator, properties, instance, schema)

    return validators.extend(cls, {"properties": set_defaults})


DefaultFillingValidator = _with_defaults(Draft202012Validator)


def load_schema(path: str | Path) -> dict:
    with open(path) as f:
        return yaml.safe_load(f)


def _check(instance, schema: dict, prefix: str) -> None:
    errors = sorted(DefaultFillingValidator(schema).iter_errors(instance), key=lambda e: list(e.absolute_path))
    if errors:
        lines = []
        for e in errors:
            key = ".".join([prefix] + [str(p) for p in e.absolute_path]) if prefix or e.absolute_path else "(top level)"
            key = key.strip(".") or "(top level)"
            lines.append(f"config key {key}: {e.message}")
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(lines))


def validate_config(config: dict, schema_dir: str | Path) -> dict:
    """Validate (in place, filling defaults) the top level and each stage section that has a schema file."""
    schema_dir = Path(schema_dir)
    _check(config, load_schema(schema_dir / "config.schema.yaml"), "")
    for section in STAGE_SECTIONS:
        path = schema_dir / f"{section}.schema.yaml"
        if path.is_file():
            config.setdefault(section, {})
            _check(config[section], load_schema(path), section)
    return config
