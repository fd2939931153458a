import copy
from pathlib import Path

import pytest
import yaml

from wsss_common.config import ConfigError, validate_config

ROOT = Path(__file__).resolve().parents[1]
SCHEMAS = ROOT / "workflow" / "schemas"


def _load(name):
    return yaml.safe_load((ROOT / "configs" / name).read_text())


@pytest.mark.parametrize("name", ["demo.yaml", "test.yaml", "voc12.yaml"])
def test_shipped_configs_are_valid(name):
    validate_config(_load(name), SCHEMAS)


def test_defaults_are_filled():
    cfg = {"experiment": "x", "data": {"class_names": ["background", "a"]}}
    validate_config(cfg, SCHEMAS)
    assert cfg["device"] == "auto" and cfg["data"]["root"] is None and cfg["data"]["train_split"] == "train_aug"


@pytest.mark.parametrize("mutate, key", [
    (lambda c: c.update(devcie="cpu"), "(top level): .*'devcie' was unexpected"),
    (lambda c: c["data"].update(class_names="background"), "data.class_names"),
    (lambda c: c["data"]["synthetic"].update(n_train="many"), "data.synthetic.n_train"),
    (lambda c: c["data"]["synthetic"].update(bogus=1), "data.synthetic: .*'bogus' was unexpected"),
    (lambda c: c.update(device="gpu"), "device"),
    (lambda c: c.update(experiment="a b/c"), "experiment"),
])
def test_errors_name_the_key(mutate, key):
    cfg = copy.deepcopy(_load("test.yaml"))
    mutate(cfg)
    with pytest.raises(ConfigError, match="config key " + key.replace("(", r"\(").replace(")", r"\)")):
        validate_config(cfg, SCHEMAS)
