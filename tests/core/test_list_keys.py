"""``--list-keys`` reads types, values and meanings from the config classes themselves."""

from __future__ import annotations

from dataclasses import fields

import pytest

from fedlab import apps

APP_NAMES = ("fedavg", "dpfedavg", "fedfoa", "zsl_parsnets", "zsl_ar2")


@pytest.mark.parametrize("name", APP_NAMES)
def test_every_key_of_every_app_has_a_one_line_meaning(name):
    cls = getattr(apps, name).config_cls
    meaning = cls.key_help()
    missing = [f.name for f in fields(cls) if not meaning.get(f.name)]
    assert not missing, f"{cls.__name__} keys without KEY_HELP: {missing}"
    assert all("\n" not in text and len(text) <= 100 for text in meaning.values())
    assert not set(meaning) - {f.name for f in fields(cls)}, "help for a key that does not exist"


def test_describe_keys_gives_type_value_and_meaning():
    config = apps.dpfedavg.resolve_config({"clip-norm": 0.7})
    rows = {key: (kind, value, text) for key, kind, value, text in config.describe_keys()}
    assert rows["clip-norm"][:2] == ("float", 0.7)
    assert rows["dp-seeded-noise"][:2] == ("bool", False)
    assert "client" in rows["num-supernodes"][2]
