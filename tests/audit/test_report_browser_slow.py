"""The audit's HTML report opened in headless Chromium: its plots decode and its table renders.

``.ci/run`` installs Chromium from Debian's packages; without it the test skips with the reason.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from fedlab.cli import fedlab_main

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (.ci/run installs it)")
def test_report_renders_in_headless_chromium(tmp_path: Path) -> None:
    out = tmp_path / "audit"
    assert fedlab_main(["audit", "--preset", "tiny", "--out", str(out)]) == 0
    report = out / "report.html"
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=5000",
           "--dump-dom", report.as_uri()]  # fmt: skip
    dom = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=True).stdout
    body = re.search(r"<body([^>]*)>", dom)
    assert body is not None, dom[:500]
    attrs = dict(re.findall(r'data-([a-z-]+)="(\d+)"', body.group(1)))
    assert int(attrs["plots"]) >= 4  # three plots and at least one reconstruction grid
    assert attrs["plots-ok"] == attrs["plots"], attrs  # every embedded PNG decoded
    assert int(attrs["rows"]) >= 2  # one table row per setting at least
    shot = tmp_path / "shot.png"
    subprocess.run([*cmd[:-2], "--window-size=1000,1600", f"--screenshot={shot}",
                    report.as_uri()], capture_output=True, timeout=120, check=True)  # fmt: skip
    assert shot.stat().st_size > 20_000  # a page with pictures, not a blank one
