"""The layering of the packages: the core imports no plugin, strategies import no client.

The plugin folders (strategies/, attacks/, clients/) install as ``fedlab.strategies``,
``fedlab.attacks`` and ``fedlab.clients``; the core is every other ``fedlab`` module. Nothing
imports the folders under their bare names (which a user's own module could shadow).

Arrows are read from the source with ``ast``: import statements, string literals handed to
``importlib.import_module`` / ``import_object``, any ``"module:attr"`` string, and any string
that is a dotted path into a plugin package (a table of modules to import later). A subprocess
then imports every ``fedlab.*`` module and checks that no plugin module was loaded, which
catches what static reading cannot (an import built at run time).
"""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FOLDERS = ("strategies", "attacks", "clients")
PLUGINS = tuple(f"fedlab.{name}" for name in FOLDERS)
#: folder -> the layers its modules must not import
FORBIDDEN = {"fedlab": set(PLUGINS), "strategies": {"fedlab.clients"}}
DYNAMIC_IMPORTERS = {"import_module", "import_object", "__import__"}
MODULE_ATTR = re.compile(r"^([A-Za-z_]\w*)(\.\w+)*:[A-Za-z_][\w.]*$")
# A whole string that is a dotted module path (``"fedlab.clients.ssl.app"``), e.g. a table of
# modules to import later; only those naming a plugin package count as arrows.
MODULE_PATH = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)+$")


def _layer(module: str) -> str:
    """``fedlab.clients`` for ``fedlab.clients.sr.app``, ``fedlab`` for a core module, the top
    name otherwise (``strategies`` for a bare, forbidden ``strategies.fedfoa``)."""
    parts = module.split(".")
    if parts[0] == "fedlab" and len(parts) > 1 and parts[1] in FOLDERS:
        return ".".join(parts[:2])
    return parts[0]


def _callee_name(node: ast.Call) -> str | None:
    if isinstance(node.func, ast.Name):
        return node.func.id
    if isinstance(node.func, ast.Attribute):
        return node.func.attr
    return None


def imported_packages(source: str, filename: str = "<source>") -> list[tuple[int, str]]:
    """``(line, module)`` of every module ``source`` imports or names for a later import."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
        elif isinstance(node, ast.Call) and _callee_name(node) in DYNAMIC_IMPORTERS:
            for arg in node.args[:1]:
                if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                    found.append((node.lineno, arg.value.partition(":")[0]))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            if MODULE_ATTR.match(node.value):
                found.append((node.lineno, node.value.partition(":")[0]))
            elif MODULE_PATH.match(node.value) and _layer(node.value) in (*PLUGINS, *FOLDERS):
                found.append((node.lineno, node.value))
    return found


def forbidden_arrows(package: str) -> list[str]:
    arrows = []
    for path in sorted((ROOT / package).rglob("*.py")):
        for line, module in imported_packages(path.read_text(), str(path)):
            if _layer(module) in FORBIDDEN[package] | set(FOLDERS):
                arrows.append(f"{path.relative_to(ROOT)}:{line} -> {module}")
    return arrows


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_no_forbidden_arrow_in_the_source(package):
    assert forbidden_arrows(package) == []


#: app -> the other apps it extends on purpose (dpfedavg is fedavg under DP); any other code two
#: apps share lives in a shared module beside them (clients/video.py, diffusion_prior.py, ...)
EXTENDS = {"dpfedavg": {"supervised"}}


def test_apps_share_code_only_through_shared_modules():
    apps = {p.name for p in (ROOT / "clients").iterdir() if (p / "__init__.py").is_file()}
    crossing = []
    for app in sorted(apps):
        for path in sorted((ROOT / "clients" / app).rglob("*.py")):
            for line, module in imported_packages(path.read_text(), str(path)):
                parts = module.split(".")
                other = parts[2] if parts[:2] == ["fedlab", "clients"] and len(parts) > 2 else ""
                if other in apps - {app} - EXTENDS.get(app, set()):
                    crossing.append(f"{path.relative_to(ROOT)}:{line} -> {module}")
    assert crossing == []


#: tests that write a researcher's own strategies.py, attacks.py and clients/ on purpose
USERS_OWN = ("user_app", "test_user_app")


@pytest.mark.parametrize("package", ["attacks", "clients", "simulations", "tests"])
def test_nothing_imports_a_plugin_folder_by_its_bare_name(package):
    bare = [
        f"{path.relative_to(ROOT)}:{line} -> {module}"
        for path in sorted((ROOT / package).rglob("*.py"))
        if not path.name.startswith(USERS_OWN)
        for line, module in imported_packages(path.read_text(), str(path))
        if _layer(module) in FOLDERS
    ]
    assert bare == []


def test_the_reader_sees_every_kind_of_arrow():
    source = (
        "import fedlab.clients.ssl\n"
        "from fedlab.attacks.models import LeNet\n"
        "importlib.import_module('fedlab.strategies.fedavg')\n"
        "import_object('fedlab.clients.zsl.app:zsl_ar2', what='app')\n"
        "NAMES = ('fedlab.attacks.cli:register',)\n"
        "APPS = {'fedavg': 'fedlab.clients.supervised.app', 'dtype': 'torch.float32'}\n"
        "from fedlab.errors import FedlabError\n"
        "TEXT = 'see fedlab.attacks.models for the models: all of them'\n"
    )
    modules = {module for _, module in imported_packages(source)}
    assert modules == {
        "fedlab.attacks.cli",
        "fedlab.attacks.models",
        "fedlab.clients.ssl",
        "fedlab.clients.supervised.app",
        "fedlab.clients.zsl.app",
        "fedlab.errors",
        "fedlab.strategies.fedavg",
    }


def test_importing_every_core_module_loads_no_plugin():
    modules = sorted(
        ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        for path in (ROOT / "fedlab").rglob("*.py")
    )
    script = (
        "import importlib, json, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        f"plugins, folders = {PLUGINS!r}, {FOLDERS!r}\n"
        "print(json.dumps(sorted(m for m in sys.modules\n"
        "                        if m.startswith(plugins) or m.split('.')[0] in folders)))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=240
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []


def test_built_ins_are_declared_as_entry_points():
    from importlib.metadata import entry_points

    declared = {
        group: {ep.name for ep in entry_points(group=f"fedlab.{group}")}
        for group in ("apps", "commands", "strategies", "workloads", "models", "attacks")
    }
    assert {"fedavg", "dpfedavg", "fedfoa", "zsl_parsnets", "zsl_ar2"} <= declared["apps"]
    assert {"attack", "pgla"} <= declared["commands"]
    assert {"fedavg", "fedmedian", "fedfoa"} <= declared["strategies"]
    assert {"supervised", "ssl", "zsl_ar2"} <= declared["workloads"]
    assert {"lenet", "fedlab.clients.supervised.models:lenet"} <= declared["models"]
    assert {"dlg", "idlg", "ig"} <= declared["attacks"]


def test_a_fresh_process_sees_the_built_ins_without_importing_them():
    # A Ray worker is such a process: nobody registered anything there by importing a module.
    script = (
        "import json, sys\n"
        "from fedlab.registry import APPS, MODELS, STRATEGIES\n"
        "seen = ['fedfoa' in STRATEGIES, 'lenet' in MODELS, 'dpfedavg' in APPS]\n"
        "loaded = sorted(m for m in sys.modules if m.startswith("
        f"{PLUGINS!r}))\n"
        "print(json.dumps([seen, loaded]))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=240
    )
    assert result.returncode == 0, result.stderr
    seen, loaded = json.loads(result.stdout.strip().splitlines()[-1])
    assert seen == [True, True, True]
    assert loaded == []  # names are listed from metadata; modules load on first lookup
