from dataclasses import dataclass

import pytest

from fedlab.config import load_toml_config, parse_override
from fedlab.errors import FedlabError
from fedlab.key_groups import TrainingRunConfig as RunConfig


def test_keys_are_kebab_case_and_round_trip():
    cfg = RunConfig.from_mapping({"num-server-rounds": 3, "lr": 0.2, "dataset": "lfw"})
    assert cfg.num_server_rounds == 3 and cfg.lr == 0.2
    assert RunConfig.from_mapping(cfg.to_mapping()) == cfg
    assert "num-server-rounds" in RunConfig.keys()


def test_unknown_key_lists_known_ones():
    with pytest.raises(FedlabError, match=r"unknown run-config key 'lr-rate'.*valid keys:.*\blr\b"):
        RunConfig.from_mapping({"lr-rate": 0.1})


@pytest.mark.parametrize(
    ("key", "value"),
    [("num-server-rounds", "five"), ("num-server-rounds", 2.5), ("lr", True), ("seed", "1")],
)
def test_wrong_type_is_refused_with_example(key, value):
    with pytest.raises(FedlabError, match=rf"{key}.* must be"):
        RunConfig.from_mapping({key: value})


def test_lossless_coercions():
    cfg = RunConfig.from_mapping({"lr": 1, "num-server-rounds": 4.0, "dataset": "digits"})
    assert isinstance(cfg.lr, float) and cfg.num_server_rounds == 4


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("num-server-rounds", 0, "must be > 0"),
        ("fraction-train", 1.5, r"must lie in \(0, 1\]"),
        ("partitioner", "random", "not one of: iid, dirichlet, shards"),
        ("fail-partitions", "a,b", "must be list of int"),
        ("trace-rounds", "1;2", "must be list of int"),
        ("dirichlet-alpha", 0.0, "must be > 0"),
    ],
)
def test_ranges_are_validated(key, value, message):
    with pytest.raises(FedlabError, match=message):
        RunConfig.from_mapping({key: value})


def test_subclass_adds_keys():
    @dataclass
    class Mine(RunConfig):
        temperature: float = 0.5

    assert Mine.from_mapping({"temperature": 1}).temperature == 1.0
    with pytest.raises(FedlabError):
        RunConfig.from_mapping({"temperature": 1})


def test_parse_override_uses_toml_values():
    assert parse_override("lr=0.1") == ("lr", 0.1)
    assert parse_override("record-traces=true") == ("record-traces", True)
    assert parse_override("dataset=digits") == ("dataset", "digits")
    assert parse_override('dataset="lfw"') == ("dataset", "lfw")
    with pytest.raises(FedlabError, match="key=value"):
        parse_override("lr")


def test_toml_file_plain_and_pyproject_table(tmp_path):
    plain = tmp_path / "a.toml"
    plain.write_text("lr = 0.3\nnum-server-rounds = 2\n")
    assert load_toml_config(plain) == {"lr": 0.3, "num-server-rounds": 2}
    project = tmp_path / "pyproject.toml"
    project.write_text('[tool.flwr.app.config]\napp = "fedavg"\nseed = 3\n')
    assert load_toml_config(project) == {"app": "fedavg", "seed": 3}
    with pytest.raises(FedlabError, match="does not exist"):
        load_toml_config(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("lr = = 1")
    with pytest.raises(FedlabError, match="not valid TOML"):
        load_toml_config(bad)
