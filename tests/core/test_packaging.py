"""How fedlab installs: every package folder under the fedlab namespace, each module once."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FOLDERS = {"fedlab": "fedlab", "strategies": "fedlab.strategies", "attacks": "fedlab.attacks",
           "clients": "fedlab.clients"}  # fmt: skip


def package_folders() -> set[str]:
    out = set()
    for folder, name in FOLDERS.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            parts = init.parent.relative_to(ROOT / folder).parts
            out.add(".".join((name, *parts)))
    return out


def test_the_package_list_holds_every_package_folder():
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert set(setuptools["packages"]) == package_folders()
    assert setuptools["package-dir"] == {name: folder for folder, name in FOLDERS.items()}


def test_no_module_is_loaded_under_two_names():
    # Every module of the package, imported in a fresh process from an unrelated folder; two
    # entries of sys.modules with one file would be one module loaded twice (a bare `strategies`
    # beside `fedlab.strategies`, or a repository root on sys.path shadowing the install).
    modules = sorted(
        ".".join((name, *p.relative_to(ROOT / folder).with_suffix("").parts)).removesuffix(
            ".__init__"
        )
        for folder, name in FOLDERS.items()
        for p in (ROOT / folder).rglob("*.py")
    )
    script = (
        "import importlib, json, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "files = {}\n"
        "for name, module in list(sys.modules.items()):\n"
        "    path = getattr(module, '__file__', None)\n"
        "    if path and 'fedlab' in name.split('.')[0] + path:\n"
        "        files.setdefault(path, []).append(name)\n"
        "print(json.dumps({p: n for p, n in files.items() if len(n) > 1}))\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('strategies', 'attacks', 'clients'))))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd="/", capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    twice, bare = (json.loads(line) for line in result.stdout.strip().splitlines()[-2:])
    assert twice == {}
    assert bare == []
