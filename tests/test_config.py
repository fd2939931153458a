import copy
from pathlib import Path

import pytest
import yaml

from wsss_common.config import ConfigError, initial_weights, load_section, pretraining_synthetic, validate_config

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


@pytest.mark.parametrize("name", ["demo.yaml", "test.yaml", "voc12.yaml"])
def test_a_cli_reading_its_section_gets_exactly_what_the_workflow_gets(name):
    """One source for every default: for each shipped config, each stage section read the way a CLI reads it (the
    YAML as written, defaults filled by load_section) equals the section after the workflow's validate_config."""
    raw = _load(name)
    workflow = validate_config(copy.deepcopy(raw), SCHEMAS)
    for section in ("bas", "seeds", "irn", "segment"):
        assert load_section(section, raw.get(section) or {}) == workflow[section], section
    assert load_section("data.synthetic", raw["data"].get("synthetic", {})) == workflow["data"]["synthetic"]


def test_nested_defaults_are_filled_without_sharing_the_schema_values():
    a, b = load_section("irn", {}), load_section("irn", {"crf": {"iterations": 3}})
    assert a["crf"]["iterations"] == 10 and b["crf"]["iterations"] == 3 and b["crf"]["gt_prob"] == 0.7
    a["scale_range"].append(9)
    assert load_section("irn", {})["scale_range"] == [0.5, 1.5]
    with pytest.raises(ConfigError, match="config key seeds.sweep.step"):
        load_section("seeds", '{"sweep": {"step": "x"}}')
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_section("seeds", "{")


def test_no_stage_module_keeps_defaults_of_its_own():
    """The schemas are the only place a default is written (no DEFAULTS tables beside them)."""
    import re
    offenders = [str(p.relative_to(ROOT)) for pkg in ("bas_seed", "irn", "segment", "wsss_common")
                 for p in (ROOT / pkg).glob("*.py") if re.search(r"^[A-Z_]*DEFAULTS\s*=", p.read_text(), re.M)]
    assert offenders == []


def test_the_pretraining_set_is_the_main_set_with_its_changes_and_the_models_start_from_its_file():
    config = validate_config({"experiment": "x", "data": {"class_names": ["bg", "a"], "synthetic": {"n_train": 50}},
                              "bas": {"depth": 34}, "pretraining": {"enabled": True,
                                                                    "synthetic": {"seed": 7, "part_radius": 0.3}}})
    merged = pretraining_synthetic(config)
    assert (merged["seed"], merged["part_radius"], merged["n_train"]) == (7, 0.3, 50)  # changes over the main set
    assert (config["data"]["synthetic"]["seed"], config["data"]["synthetic"]["part_radius"]) == (0, 0.2)  # untouched
    assert initial_weights(config) == "results/x/pretraining/pretrained_resnet34.pth"
    config["pretraining"]["enabled"] = False
    assert initial_weights(config) is None
    config["imagenet_weights"] = "w.pth"
    assert initial_weights(config) == "w.pth"
    default = validate_config({"experiment": "x", "data": {"class_names": ["bg", "a"]}})
    assert default["pretraining"] == {"enabled": False, "seed": 0, "synthetic": {"seed": 101}}
    assert pretraining_synthetic(default)["seed"] == 101
    with pytest.raises(ConfigError, match="pretraining.synthetic.seed: 0 is data.synthetic.seed"):
        pretraining_synthetic(dict(default, pretraining={"synthetic": {"seed": 0}}))
    with pytest.raises(ConfigError, match="pretraining.synthetic.max_objects"):
        pretraining_synthetic(dict(default, pretraining={"synthetic": {"max_objects": 0}}))
