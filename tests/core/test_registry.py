from pathlib import Path

import pytest

from fedlab.errors import FedlabError
from fedlab.registry import DATASETS, STRATEGIES, WORKLOADS, Registry, import_object


def test_unknown_name_lists_known_ones():
    with pytest.raises(FedlabError, match=r"unknown strategy 'fedavgg'; known: .*fedavg"):
        STRATEGIES.get("fedavgg")
    with pytest.raises(FedlabError, match=r"unknown dataset 'cifar100'; known: .*digits"):
        DATASETS.get("cifar100")


def test_builtins_load_on_first_lookup():
    assert "supervised" in WORKLOADS
    assert {"digits", "lfw", "patches", "cifar10", "mnist", "imagefolder"} <= set(DATASETS.names())


def test_duplicate_names_are_refused():
    reg = Registry("things")
    reg.add("a", int)
    reg.add("a", int)  # same object again is harmless
    with pytest.raises(FedlabError, match="already registered"):
        reg.add("a", float)


def test_module_attr_resolves_without_registration():
    assert STRATEGIES.get("flwr.serverapp.strategy:FedProx").__name__ == "FedProx"
    with pytest.raises(FedlabError, match="cannot import module"):
        STRATEGIES.get("no_such_module_xyz:Thing")
    with pytest.raises(FedlabError, match="has no attribute"):
        import_object("fedlab.registry:Nope")
    with pytest.raises(FedlabError, match="module:attr"):
        import_object("fedlab.registry")


def test_entry_points_add_plugins_from_other_packages(monkeypatch):
    from importlib.metadata import EntryPoint

    import fedlab.registry as registry

    def fake_entry_points(group):
        assert group == "fedlab.things"
        return [EntryPoint("marked", "core.custom_strategy:MarkedFedAvg", group)]

    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[2]))
    monkeypatch.setattr(registry, "entry_points", fake_entry_points)
    reg = Registry("things")
    assert reg.get("marked").__name__ == "MarkedFedAvg"
    assert reg.names() == ["marked"]


def test_module_attr_can_be_disabled_and_lazy_names_stay_allowed(tmp_path, monkeypatch):
    (tmp_path / "sidefx_mod.py").write_text(
        f"open({str(tmp_path / 'imported')!r}, 'w').close()\ndef f():\n    return 1\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    reg = Registry("things")
    with pytest.raises(FedlabError, match="'sidefx_mod:f'.*importing 'module:attr' is disabled"):
        reg.get("sidefx_mod:f", allow_import=False)
    assert not (tmp_path / "imported").exists()
    reg.add_lazy("sidefx_mod:f", "sidefx_mod:f")  # a fixed import chosen by the registering code
    assert "sidefx_mod:f" in reg and reg.names() == ["sidefx_mod:f"]
    assert not (tmp_path / "imported").exists()  # imported on first lookup, not before
    assert reg.get("sidefx_mod:f", allow_import=False)() == 1
    assert (tmp_path / "imported").exists()
    with pytest.raises(FedlabError, match="already registered"):
        reg.add("sidefx_mod:f", int)
