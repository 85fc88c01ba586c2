"""A core install runs the core; an app or command of a family whose extra is missing says, in
one line and before Ray, which extra to install (issue 28)."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from fedlab.extras import EXTRAS

ROOT = Path(__file__).resolve().parents[2]


def test_the_extras_table_is_pyprojects():
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    for name, modules in EXTRAS.items():
        declared = {re.split(r"[<>=\[ ]", req)[0].lower() for req in extras[name]}
        assert declared == {dist.lower() for _, dist in modules}
    assert "fedlab[diffusion,video]" in extras["dev"]


HIDE = "import sys\nfor m in {hidden!r}:\n    sys.modules[m] = None  # as if not installed\n"


@pytest.mark.parametrize(
    ("hidden", "argv", "extra", "named"),
    [
        (["diffusers", "pywt"], ["flower-simulation", "--app", "fedlab.apps:diffsr"],
         "diffusion", "app 'diffsr'"),
        # One app and one command per extra stay in the fast tier (about 6 s each).
        pytest.param(["diffusers", "pywt"], ["fedlab", "sr", "--in", "in.png", "--scale", "2",
                     "--out", "o"], "diffusion", "`fedlab sr`", marks=pytest.mark.extended),
        pytest.param(["av", "skvideo"], ["flower-simulation", "--app",
                     "fedlab.apps:streaming_arena"], "video", "app 'streaming_arena'",
                     marks=pytest.mark.extended),
        (["av", "skvideo"], ["fedlab", "arena", "--clip", "clip.mp4", "--out", "o"], "video",
         "`fedlab arena`"),
    ],
)  # fmt: skip
def test_a_missing_extra_is_one_line_naming_it(hidden, argv, extra, named, tmp_path):
    main = "flower_simulation_main" if argv[0] == "flower-simulation" else "fedlab_main"
    script = HIDE.format(hidden=hidden) + (
        f"from fedlab.cli import {main} as main\nsys.exit(main({argv[1:]!r}))\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert named in lines[0] and f"pip install 'fedlab[{extra}]'" in lines[0]
    assert not (tmp_path / "runs").exists()  # refused before any run folder or Ray
