"""DLG speed against the original mit-han-lab/dlg loop, on images outside the repository.

Protocol (fixed before measuring). Images: the centre square of each photo below, resized to
32x32 with anti-aliasing (grey ones repeated to three channels): scikit-learn's two sample
images ``china`` and ``flower`` and scikit-image's ``grass``, ``retina``, ``moon`` and ``text``
(none of them in the attack bench's list). Victim: the bench's (``fedlab.attacks.bench.case_input``:
DLG's sigmoid LeNet with a 100-class head, DLG's uniform initialisation seeded 0, one mean
cross-entropy gradient, float32); the label of image ``i`` is ``i``. One process, one torch
thread, ``OMP_NUM_THREADS=1``; for each image, one after the other:

(a) the original: the loop of mit-han-lab/dlg ``main.py``, read at run time from a local clone
    (``--dlg-git-dir``, e.g. the mirror the ``fetch`` tool made; never copied into this
    repository) from ``# generate dummy data and label`` to ``plt.figure`` and executed
    verbatim on our victim (``net``, ``original_dy_dx``, ``gt_data``, ``gt_onehot_label``, its
    own ``cross_entropy_for_onehot`` from its ``utils.py``), ``torch.manual_seed(1234)`` before
    it as in ``main.py``, plotting stubbed out. ``torch.optim.LBFGS`` is replaced by a subclass
    that, after each ``step``, computes the PSNR of the dummy image (its cost taken off the
    clock) and stops the run at ``--cap-s`` seconds;
(b) ours: ``fedlab.attacks.dlg.DLG()`` with its defaults, restarts included, PSNR through
``monitor``
    after every 20-evaluation chunk (cost off the clock).

Time to 30 dB is the clock at the first PSNR >= 30. The ratio is (a)/(b) per image; where (a)
never reaches 30 dB (in its 300 steps or the cap) its whole run time is used, a lower bound.
The median ratio is reported with every per-image figure.

    python simulations/audit_dlg_speed.py --dlg-git-dir /work/.mirror/mit-han-lab+dlg/repo
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import statistics
import subprocess
import time
import types
from pathlib import Path
from typing import Any

import numpy as np
import torch
from fedlab.attacks.base import AttackInput, ModelSpec
from fedlab.attacks.dlg import DLG

from fedlab import image_quality
from fedlab.atomic import atomic_write_json, atomic_write_text

HERE = Path(__file__).resolve().parent
OUT = HERE / "results" / "audit"
IMAGES = ("china", "flower", "grass", "retina", "moon", "text")
TARGET_DB = 30.0


class _Stop(Exception):
    pass


def image(name: str, size: int = 32) -> torch.Tensor:
    """``(3, size, size)`` in [0, 1]: the centre square of an offline photo, resized."""
    from skimage import data, transform
    from sklearn.datasets import load_sample_image

    img = load_sample_image(f"{name}.jpg") if name in ("china", "flower") else getattr(data, name)()
    img = np.asarray(img, dtype=np.float64)
    img = img / 255.0 if img.max() > 1 else img
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    h, w = img.shape[:2]
    s = min(h, w)
    top, left = (h - s) // 2, (w - s) // 2
    img = transform.resize(
        img[top : top + s, left : left + s, :3], (size, size), anti_aliasing=True
    )
    return torch.tensor(img, dtype=torch.float32).permute(2, 0, 1).clamp(0, 1).contiguous()


def victim(x: torch.Tensor, label: int) -> tuple[AttackInput, torch.nn.Module, list]:
    spec = ModelSpec("lenet", {"num_classes": 100, "image_size": 32, "init": "dlg-uniform"})
    torch.manual_seed(0)
    model = spec.build()
    loss = torch.nn.functional.cross_entropy(model(x), torch.tensor([label]))
    grads = [g.detach() for g in torch.autograd.grad(loss, list(model.parameters()))]
    inp = AttackInput(
        model=spec,
        params=[p.detach().clone() for p in model.parameters()],
        batch_size=1,
        image_shape=(3, 32, 32),
        num_classes=100,
        gradients=grads,
    )
    return inp, model, grads


def _git_show(git_dir: str, path: str) -> str:
    return subprocess.run(
        ["git", "--git-dir", git_dir, "show", f"HEAD:{path}"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout


def original(git_dir: str, x: torch.Tensor, label: int, cap_s: float) -> dict[str, Any]:
    """Run the original loop (see the module docstring); seconds to 30 dB or the whole run."""
    main = _git_show(git_dir, "main.py")
    start, end = main.index("# generate dummy data and label"), main.index("plt.figure")
    utils: dict[str, Any] = {}
    exec(_git_show(git_dir, "utils.py"), utils)  # noqa: S102  the original's own helpers
    _, model, grads = victim(x, label)
    clock = {"t": 0.0, "reached": None, "best": 0.0, "steps": 0}

    class TimedLBFGS(torch.optim.LBFGS):
        def step(self, closure):  # type: ignore[override]
            t0 = time.perf_counter()
            loss = super().step(closure)
            clock["t"] += time.perf_counter() - t0
            clock["steps"] += 1
            dummy = self.param_groups[0]["params"][0].detach()
            p = image_quality.psnr(x[0], dummy[0].clamp(0, 1))
            clock["best"] = max(clock["best"], p)
            if clock["reached"] is None and p >= TARGET_DB:
                clock["reached"] = clock["t"]
                raise _Stop
            if clock["t"] > cap_s:
                raise _Stop
            return loss

    fake_torch = types.SimpleNamespace(
        **{k: getattr(torch, k) for k in dir(torch) if not k.startswith("__")}
    )
    fake_torch.optim = types.SimpleNamespace(LBFGS=TimedLBFGS)
    onehot = torch.zeros(1, 100)
    onehot[0, label] = 1
    env = {
        "torch": fake_torch,
        "F": torch.nn.functional,
        "net": model,
        "original_dy_dx": list(grads),
        "gt_data": x,
        "gt_onehot_label": onehot,
        "criterion": utils["cross_entropy_for_onehot"],
        "device": "cpu",
        "plt": types.SimpleNamespace(imshow=lambda *a, **k: None),
        "tt": lambda t: None,
    }
    torch.manual_seed(1234)
    with contextlib.suppress(_Stop), contextlib.redirect_stdout(io.StringIO()):
        exec(main[start:end], env)  # noqa: S102  the original loop, verbatim
    return {
        "seconds": clock["reached"] if clock["reached"] is not None else clock["t"],
        "reached": clock["reached"] is not None,
        "best_psnr": clock["best"],
        "steps": clock["steps"],
    }


def ours(x: torch.Tensor, label: int) -> dict[str, Any]:
    inp, _, _ = victim(x, label)
    clock = {"off": 0.0, "reached": None, "best": 0.0}
    t0 = time.perf_counter()

    def monitor(dummy: torch.Tensor, evals: int) -> None:
        m0 = time.perf_counter()
        p = image_quality.psnr(x[0], inp.to_unit_range(dummy)[0])
        clock["best"] = max(clock["best"], p)
        if clock["reached"] is None and p >= TARGET_DB:
            clock["reached"] = m0 - t0 - clock["off"]
        clock["off"] += time.perf_counter() - m0

    result = DLG(monitor=monitor).reconstruct(inp)
    total = time.perf_counter() - t0 - clock["off"]
    return {
        "seconds": clock["reached"] if clock["reached"] is not None else total,
        "total": total,
        "reached": clock["reached"] is not None,
        "best_psnr": clock["best"],
        "final_psnr": image_quality.psnr(x[0], result.images[0]),
    }


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| image | original: s to 30 dB | original best dB | ours: s to 30 dB | "
        "ours best dB | ratio |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        a, b = r["original"], r["ours"]
        mark = "" if a["reached"] else " (never: whole run, lower bound)"
        lines.append(
            f"| {r['image']} | {a['seconds']:.1f}{mark} | {a['best_psnr']:.1f} | "
            f"{b['seconds']:.1f} | {b['best_psnr']:.1f} | {r['ratio']:.2f}"
            f"{'' if a['reached'] else ' (>=)'} |"
        )
    med = statistics.median(r["ratio"] for r in rows)
    lines += ["", f"Median ratio over {len(rows)} images: {med:.2f}x (one thread each)."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dlg-git-dir", required=True, help="git dir of mit-han-lab/dlg")
    parser.add_argument("--cap-s", type=float, default=150.0, help="original's time cap")
    parser.add_argument("--images", default=",".join(IMAGES))
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / "dlg_speed.json"
    done = json.loads(path.read_text()) if path.exists() else {"rows": []}
    rows = [r for r in done["rows"] if r["image"] in args.images.split(",")]
    for i, name in enumerate(args.images.split(",")):
        if any(r["image"] == name for r in rows):
            continue
        x = image(name)[None]
        a = original(args.dlg_git_dir, x, i, args.cap_s)
        b = ours(x, i)
        rows.append(
            {
                "image": name,
                "label": i,
                "original": a,
                "ours": b,
                "ratio": a["seconds"] / b["seconds"] if b["reached"] else float("nan"),
            }
        )
        atomic_write_json(path, {"cap_s": args.cap_s, "threads": 1, "rows": rows})
        print(f"{name}: original {a}, ours {b}", flush=True)
    atomic_write_text(OUT / "dlg_speed.md", table(rows))
    print(table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
