from __future__ import annotations

import pytest
import yaml

from spine_kp.config import ConfigError, parse_override_args
from spine_kp.engine.config import experiment_to_dict, load_experiment, resolve_config_path
from spine_kp.schema import CONFIG_DIR


@pytest.mark.parametrize("name", sorted(p.stem for p in CONFIG_DIR.glob("*.yaml")))
def test_every_packaged_config_loads_and_round_trips(name):
    cfg = load_experiment(name)
    again = load_experiment(None, base=experiment_to_dict(cfg))
    assert again == cfg


def test_overrides_change_typed_values():
    cfg = load_experiment(
        "demo_cpu",
        parse_override_args(
            ["--model.backbone", "efficientnet_b0", "--optim.lr=3e-4", "--data.input_size", "[128, 96]"]
        ),
    )
    assert cfg.model.backbone == "efficientnet_b0"
    assert cfg.optim.lr == pytest.approx(3e-4) and isinstance(cfg.optim.lr, float)
    assert tuple(cfg.data.input_size) == (128, 96)


def test_unknown_key_is_an_error_naming_it(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text(yaml.safe_dump({"model": {"backbon": "resnet18"}}))
    with pytest.raises(ConfigError, match=r"bad.yaml: unknown key 'model.backbon'"):
        load_experiment(p)
    with pytest.raises(ConfigError, match=r"unknown key 'optim.learning_rate'"):
        load_experiment("demo_cpu", {"optim.learning_rate": "0.1"})
    with pytest.raises(ConfigError, match=r"'optim.lr' must be float"):
        load_experiment("demo_cpu", {"optim.lr": "fast"})


def test_bad_override_syntax_and_missing_config():
    with pytest.raises(ConfigError, match="has no value"):
        parse_override_args(["--model.backbone"])
    with pytest.raises(ConfigError, match="overrides look like"):
        parse_override_args(["resnet18"])
    with pytest.raises(ConfigError, match="demo_cpu"):
        resolve_config_path("no_such_config")


@pytest.mark.parametrize("neighbours", [0, 1, 2])
def test_in_chans_is_derived_from_neighbours(neighbours: int) -> None:
    cfg = load_experiment("demo_cpu", {"data.neighbours": str(neighbours)})
    assert cfg.model.in_chans == 2 * neighbours + 1
    # a config (or an old checkpoint's config) that states the same value loads the same
    stated = experiment_to_dict(cfg)
    assert stated["model"]["in_chans"] == 2 * neighbours + 1 and load_experiment(None, base=stated) == cfg


def test_a_contradicting_in_chans_is_one_line_naming_both_keys() -> None:
    with pytest.raises(ConfigError) as info:
        load_experiment("demo_cpu", {"data.neighbours": "1", "model.in_chans": "1"})
    message = str(info.value)
    assert "'model.in_chans' must be 2 * data.neighbours + 1 = 3" in message and "\n" not in message
    assert "derived from data.neighbours" in message


def test_no_packaged_config_states_what_is_derived() -> None:
    for path in sorted(CONFIG_DIR.glob("*.yaml")):
        assert "in_chans" not in (yaml.safe_load(path.read_text()).get("model") or {}), path.name
