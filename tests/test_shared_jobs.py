"""One module per shared job (issue 29): every reported image-quality figure comes from
:mod:`fedlab.image_quality`, and no other module repeats a shared job.

(a) With ``fedlab.image_quality.psnr`` and ``.ssim`` replaced by a sentinel, the figures that a
gradient-leakage attack, the Diff-SR evaluation, the harmonization evaluation and the CaDM
evaluation report become the sentinel: none of them computes PSNR or SSIM on its own.

(b) Reading the sources of fedlab/, clients/, attacks/ and strategies/: no module but
``fedlab/image_quality.py`` defines a PSNR or SSIM function or holds the BT.601 weights, none
imports names from it (callers go through the module attribute, which (a) relies on), none but
``clients/video.py`` uses PyAV, none but ``fedlab/run_guard.py`` sends SIGTERM or SIGKILL, and
none switches matplotlib's process-wide backend or uses pyplot's global figure state.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from fedlab import image_quality

ROOT = Path(__file__).resolve().parents[1]
LIBRARY = ("fedlab", "clients", "attacks", "strategies")
SENTINEL = 123.0


def _replace_psnr_and_ssim(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(image_quality, "psnr", lambda *args, **kwargs: SENTINEL)
    monkeypatch.setattr(image_quality, "ssim", lambda *args, **kwargs: SENTINEL)


def _reported_then_patched(
    monkeypatch: pytest.MonkeyPatch, report: Callable[[], list[float]]
) -> tuple[list[float], list[float]]:
    """The figures ``report`` returns as it is, then with PSNR and SSIM replaced."""
    before = report()
    _replace_psnr_and_ssim(monkeypatch)
    return before, report()


def _assert_changed_to_sentinel(before: list[float], after: list[float]) -> None:
    assert before and len(before) == len(after)
    assert all(v != SENTINEL for v in before), before
    assert after == [SENTINEL] * len(after), after


# -- (a) the reported figures come from fedlab.image_quality ------------------------------------
def test_attack_scores_use_the_shared_psnr_and_ssim(monkeypatch):
    from fedlab.attacks import metrics
    from fedlab.attacks.base import AttackInput, ModelSpec
    from fedlab.attacks.dlg import DLG

    x = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    y = torch.tensor([3])
    spec = ModelSpec("lenet", {"num_classes": 10, "image_size": 16, "init": "dlg-uniform"})
    torch.manual_seed(0)
    model = spec.build()
    loss = torch.nn.functional.cross_entropy(model(x), y)
    gradients = [g.detach() for g in torch.autograd.grad(loss, list(model.parameters()))]
    inp = AttackInput(model=spec, params=[p.detach().clone() for p in model.parameters()],
                      batch_size=1, image_shape=(3, 16, 16), num_classes=10,
                      gradients=gradients)  # fmt: skip
    result = DLG(max_iterations=2, restarts=0).reconstruct(inp)

    def report() -> list[float]:
        scores = metrics.score(x, y, result.images, result.labels)
        return [scores["psnr"], scores["ssim"]]

    _assert_changed_to_sentinel(*_reported_then_patched(monkeypatch, report))


def test_sr_evaluation_uses_the_shared_psnr_and_ssim(monkeypatch):
    from fedlab.clients.sr.app import diffsr
    from fedlab.clients.sr.evaluate import evaluate_client

    from fedlab.diffusion import build_unet, make_scheduler

    config = diffsr.resolve_config({"unet": "tiny", "init-from": "", "eval-crops": 1,
                                    "eval-crop-size": 16, "scales": "2",
                                    "methods": "bicubic"})  # fmt: skip
    torch.manual_seed(0)
    unet, scheduler = build_unet("tiny"), make_scheduler()

    def report() -> list[float]:
        out = evaluate_client(config, unet, scheduler, 0, 2)
        return [v for k, v in sorted(out.items()) if "psnr" in k or "ssim" in k]

    before, after = _reported_then_patched(monkeypatch, report)
    _assert_changed_to_sentinel(before, after)
    assert len(after) >= 3  # PSNR, SSIM and the LR-consistency PSNR of bicubic


def test_harmonization_evaluation_uses_the_shared_ssim(monkeypatch):
    from fedlab.clients.harmonization.app import harmonization
    from fedlab.clients.harmonization.evaluate import evaluate_client

    config = harmonization.resolve_config({"methods": "cut", "max-composites": 1})

    def report() -> list[float]:
        out = evaluate_client(config, None, None, 0, 1)  # the baselines need no prior
        return [v for k, v in sorted(out.items()) if "psnr" in k or "ssim" in k]

    _assert_changed_to_sentinel(*_reported_then_patched(monkeypatch, report))


def test_cadm_evaluation_uses_the_shared_psnr_and_ssim(monkeypatch):
    from fedlab.clients.cadm.evaluate import evaluate_clip

    ramp = np.linspace(0, 255, 32)[None, None, :, None] * np.ones((3, 32, 1, 3))
    clip = (ramp + np.arange(3)[:, None, None, None] * 9).clip(0, 255).astype(np.uint8)

    def report() -> list[float]:
        rows = evaluate_clip(clip, "ramp", pairs=[(2, 8)], crfs=[30], x264_crfs=[30],
                             methods={"bicubic": (None, 0)}, with_vmaf=False)  # fmt: skip
        return [row[m] for row in rows for m in ("psnr", "ssim")]

    _assert_changed_to_sentinel(*_reported_then_patched(monkeypatch, report))


# -- (b) no module repeats a shared job ---------------------------------------------------------
def _library_files() -> Iterator[tuple[str, str, ast.Module]]:
    for folder in LIBRARY:
        for path in sorted((ROOT / folder).rglob("*.py")):
            if "__pycache__" in path.parts:
                continue
            text = path.read_text()
            yield path.relative_to(ROOT).as_posix(), text, ast.parse(text, str(path))


def _dotted(node: ast.AST) -> str:
    """``a.b.c`` for a chain of attributes on a name, else ``""``."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    return ".".join([node.id, *reversed(parts)]) if isinstance(node, ast.Name) else ""


def _imports(tree: ast.Module) -> Iterator[tuple[int, str, list[str]]]:
    """``(line, module, names)`` of every import (``names`` empty for ``import module``)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from ((node.lineno, a.name, []) for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            yield node.lineno, node.module, [a.name for a in node.names]


QUALITY_FUNCTIONS = {"psnr", "ssim", "_psnr", "_ssim"}
BT601 = re.compile(r"(?<![\d.])0\.587(?!\d)")
SIGNAL_NAMES = {"SIGTERM", "SIGKILL"}
SIGNAL_CALLS = {"os.kill", "os.killpg", "signal.pthread_kill"}
SIGNAL_METHODS = {"terminate", "kill", "send_signal"}


def _offences(rel: str, text: str, tree: ast.Module) -> list[str]:
    found = []
    if rel != "fedlab/image_quality.py":
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                if node.name.lower() in QUALITY_FUNCTIONS:
                    found.append(f"{rel}:{node.lineno} defines {node.name}()")
        for line, module, names in _imports(tree):
            if module == "fedlab.image_quality":
                found.append(f"{rel}:{line} imports {module} names {names} (use the module)")
        for number, line in enumerate(text.splitlines(), 1):
            if BT601.search(line):
                found.append(f"{rel}:{number} holds the BT.601 weight 0.587")
    if rel != "clients/video.py":
        for line, module, _ in _imports(tree):
            if module == "av" or module.startswith("av."):
                found.append(f"{rel}:{line} imports PyAV")
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and _dotted(node.func) == "av.open":
                found.append(f"{rel}:{node.lineno} calls av.open")
    if rel != "fedlab/run_guard.py":
        for node in ast.walk(tree):
            name = node.attr if isinstance(node, ast.Attribute) else getattr(node, "id", None)
            if name in SIGNAL_NAMES:
                found.append(f"{rel}:{node.lineno} names {name}")
            if isinstance(node, ast.Call):
                callee = _dotted(node.func)
                method = node.func.attr if isinstance(node.func, ast.Attribute) else ""
                if callee in SIGNAL_CALLS or method in SIGNAL_METHODS:
                    found.append(f"{rel}:{node.lineno} sends a signal ({callee or method})")
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and _dotted(node.func) in ("matplotlib.use", "mpl.use"):
            found.append(f"{rel}:{node.lineno} calls matplotlib.use")
    for line, module, names in _imports(tree):
        if module == "matplotlib.pyplot" or (module == "matplotlib" and "pyplot" in names):
            found.append(f"{rel}:{line} imports pyplot (use matplotlib.figure.Figure)")
    return found


def test_no_module_repeats_a_shared_job():
    offences = [o for rel, text, tree in _library_files() for o in _offences(rel, text, tree)]
    assert not offences, "\n".join(offences)


def test_the_source_check_catches_each_kind_of_repeat():
    bad = """
import av
import matplotlib
import matplotlib.pyplot as plt
from fedlab.image_quality import psnr
GREY = (0.299, 0.587, 0.114)
def _ssim(a, b):
    return 1.0
def stop(proc, pid):
    matplotlib.use("Agg")
    av.open("clip.mp4")
    os.kill(pid, signal.SIGKILL)
    proc.terminate()
"""
    kinds = ["imports PyAV", "pyplot", "names ['psnr']", "0.587", "defines _ssim", "matplotlib.use",
             "calls av.open", "names SIGKILL", "os.kill", "proc.terminate"]  # fmt: skip
    found = "\n".join(_offences("clients/x.py", bad, ast.parse(bad)))
    for kind in kinds:
        assert kind in found, (kind, found)
    assert _offences("fedlab/image_quality.py", "def psnr(): return 0.587\n",
                     ast.parse("def psnr(): return 0.587\n")) == []  # fmt: skip
