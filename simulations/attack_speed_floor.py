"""Cost of one gradient-match evaluation against a floor for the same model on this CPU (issue 37).

One evaluation is what every DLG, iDLG and inverting-gradients iteration pays: the victim's
forward pass on the dummy batch, its parameter gradient with ``create_graph=True``, the matching
loss against the target gradient, and that loss's gradient with respect to the dummy variables.
Three objectives are timed, each on its victim:

* ``dlg``: DLG's LeNet with a 100-class head (the attack bench's victim), soft labels, L2 loss;
* ``idlg-audit``: the default audit's LeNet (10 classes), known labels, L2 loss;
* ``ig-audit``: the same model, known labels, cosine distance plus total variation.

Variants of the same evaluation (same inputs, same loss value up to float rounding, checked):

* ``start``: the closure as ``attacks/dlg.py`` and ``attacks/inverting.py`` ran it when issue 37
  was opened (``loss.backward()`` into every leaf, the model's parameters included);
* ``ours``: the evaluation the attacks run now (:func:`fedlab.attacks.dlg.match_evaluation`);
* ``inputs-only``: ``torch.autograd.grad`` of the loss with respect to the dummy variables only;
* ``no-mkldnn``: ``inputs-only`` with oneDNN convolutions off (PyTorch's im2col kernels);
* ``func``: ``torch.func.grad`` of a ``functional_call`` (the functional form);
* ``compiled``: ``func`` under ``torch.compile`` (``--compile``; about a minute of compilation);
* ``batched-K``: K restarts at once through :func:`fedlab.attacks.batched.per_problem_gradients`
  (for this LeNet: per-sample gradients written out with unfold and batched matrix products, the
  second order by autograd), time per restart.

The floor of a model is the fastest one-target variant (``batched-1`` included); ``batched-K``
for K > 1 is reported beside it, per target, since it needs several problems at once. Median
of ``--repeats`` timing blocks of ``--evals`` evaluations each, one torch thread.

    OMP_NUM_THREADS=1 python simulations/attack_speed_floor.py [--compile]

Writes ``simulations/results/attacks/speed-floor.json`` and prints a markdown table.
"""

from __future__ import annotations

import argparse
import math
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from fedlab.attacks.base import ModelSpec, soft_cross_entropy
from fedlab.attacks.batched import per_problem_gradients
from fedlab.attacks.dlg import gradient_l2, match_evaluation
from fedlab.attacks.inverting import cosine_distance, total_variation

from fedlab.atomic import atomic_write_json

OUT = Path(__file__).resolve().parent / "results" / "attacks" / "speed-floor.json"
OBJECTIVES = {
    "dlg": {"classes": 100, "soft": True, "loss": "l2"},
    "idlg-audit": {"classes": 10, "soft": False, "loss": "l2"},
    "ig-audit": {"classes": 10, "soft": False, "loss": "cos-tv"},
}
TV = 1e-2


def problem(classes: int, seed: int = 0) -> dict[str, Any]:
    """A victim LeNet, its target gradient for one image, and a dummy start."""
    spec = ModelSpec("lenet", {"num_classes": classes, "image_size": 32, "init": "dlg-uniform"})
    torch.manual_seed(seed)
    model = spec.build().float().eval()
    x = torch.rand(1, 3, 32, 32)
    y = torch.tensor([classes // 3])
    loss = F.cross_entropy(model(x), y)
    target = [g.detach() for g in torch.autograd.grad(loss, list(model.parameters()))]
    dummy = 0.5 + 0.1 * torch.randn(1, 3, 32, 32)
    logits = torch.randn(1, classes)
    return {"model": model, "target": target, "labels": y, "x": dummy, "logits": logits}


def matching(kind: str, dummy: list[torch.Tensor], target: list[torch.Tensor], x: torch.Tensor):
    if kind == "l2":
        return gradient_l2(dummy, target)
    return cosine_distance(dummy, target) + TV * total_variation(x)


def task_loss(out: torch.Tensor, labels: torch.Tensor, logits: torch.Tensor | None):
    if logits is None:
        return F.cross_entropy(out, labels)
    return soft_cross_entropy(out, torch.softmax(logits, dim=-1))


def start_variant(p: dict[str, Any], obj: dict[str, Any]) -> Callable[[], torch.Tensor]:
    """The closure as it ran at the start of issue 37 (``loss.backward()``)."""
    model, params = p["model"], list(p["model"].parameters())
    x = p["x"].clone().requires_grad_(True)
    logits = p["logits"].clone().requires_grad_(True) if obj["soft"] else None
    variables = [x] + ([logits] if logits is not None else [])

    def run() -> torch.Tensor:
        for v in variables:
            v.grad = None
        task = task_loss(model(x), p["labels"], logits)
        dummy = torch.autograd.grad(task, params, create_graph=True)
        loss = matching(obj["loss"], dummy, p["target"], x)
        loss.backward()
        return loss

    return run


def ours_variant(p: dict[str, Any], obj: dict[str, Any]) -> Callable[[], torch.Tensor]:
    """The evaluation the attacks run now."""
    x = p["x"].clone().requires_grad_(True)
    logits = p["logits"].clone().requires_grad_(True) if obj["soft"] else None
    variables = [x] + ([logits] if logits is not None else [])
    labels = None if obj["soft"] else p["labels"]
    if obj["loss"] == "l2":
        match = gradient_l2
    else:

        def match(d: list[torch.Tensor], t: list[torch.Tensor]) -> torch.Tensor:
            return cosine_distance(d, t) + TV * total_variation(x)

    evaluate = match_evaluation(p["model"], p["target"], labels=labels, match=match)

    def run() -> torch.Tensor:
        loss, grads = evaluate(x, logits)
        for v, g in zip(variables, grads, strict=True):
            v.grad = g
        return loss

    return run


def inputs_only_variant(
    p: dict[str, Any], obj: dict[str, Any], mkldnn: bool = True
) -> Callable[[], torch.Tensor]:
    model, params = p["model"], list(p["model"].parameters())
    x = p["x"].clone().requires_grad_(True)
    logits = p["logits"].clone().requires_grad_(True) if obj["soft"] else None
    variables = [x] + ([logits] if logits is not None else [])

    def run() -> torch.Tensor:
        with torch.backends.mkldnn.flags(enabled=mkldnn):
            task = task_loss(model(x), p["labels"], logits)
            dummy = torch.autograd.grad(task, params, create_graph=True)
            loss = matching(obj["loss"], dummy, p["target"], x)
            torch.autograd.grad(loss, variables)
        return loss

    return run


def func_variant(
    p: dict[str, Any], obj: dict[str, Any], compiled: bool
) -> Callable[[], torch.Tensor]:
    model = p["model"]
    names = [n for n, _ in model.named_parameters()]
    weights = {n: q.detach() for n, q in model.named_parameters()}
    target = p["target"]
    soft = obj["soft"]

    def task(w: dict[str, torch.Tensor], x: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        out = torch.func.functional_call(model, w, (x,))
        return task_loss(out, p["labels"], logits if soft else None)

    def objective(x: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        g = torch.func.grad(task)(weights, x, logits)
        return matching(obj["loss"], [g[n] for n in names], target, x)

    fn = torch.func.grad_and_value(objective, argnums=(0, 1))
    if compiled:
        fn = torch.compile(fn)
    x, logits = p["x"].clone(), p["logits"].clone()

    def run() -> torch.Tensor:
        return fn(x, logits)[1]

    return run


def batched_variant(p: dict[str, Any], obj: dict[str, Any], k: int) -> Callable[[], torch.Tensor]:
    """K restarts at once through :func:`fedlab.attacks.batched.per_problem_gradients`."""
    grads_of = per_problem_gradients(p["model"])
    target = p["target"]
    x = p["x"].repeat(k, 1, 1, 1, 1).requires_grad_(True)
    logits = p["logits"].repeat(k, 1, 1).requires_grad_(True) if obj["soft"] else None
    variables = [x] + ([logits] if logits is not None else [])
    labels = p["labels"].repeat(k, 1)

    def run() -> torch.Tensor:
        y = torch.softmax(logits, dim=-1) if logits is not None else labels
        shaped = grads_of(x, y)
        if obj["loss"] == "l2":
            loss = sum(((g - t) ** 2).sum() for g, t in zip(shaped, target, strict=True))
        else:
            dot = sum((g * t).flatten(1).sum(1) for g, t in zip(shaped, target, strict=True))
            dn = sum((g**2).flatten(1).sum(1) for g in shaped)
            tn = math.sqrt(float(sum((t**2).sum() for t in target)))
            tv = (x[..., 1:] - x[..., :-1]).abs().flatten(1).mean(1)
            tv = tv + (x[..., 1:, :] - x[..., :-1, :]).abs().flatten(1).mean(1)
            loss = (1 - dot / (dn.sqrt() * tn + 1e-12) + TV * tv).sum()
        torch.autograd.grad(loss, variables)
        return loss / k

    return run


def timed(run: Callable[[], Any], evals: int, repeats: int) -> float:
    """Median seconds per evaluation over ``repeats`` blocks of ``evals`` calls."""
    for _ in range(max(10, evals // 5)):
        run()
    blocks = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(evals):
            run()
        blocks.append((time.perf_counter() - t0) / evals)
    return statistics.median(blocks)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--evals", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch", default="1,4,8")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile")
    parser.add_argument("--out", default=str(OUT))
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    results: dict[str, Any] = {
        "torch": torch.__version__,
        "machine": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "evals": args.evals,
        "repeats": args.repeats,
        "objectives": {},
    }
    for name, obj in OBJECTIVES.items():
        p = problem(obj["classes"])
        variants: dict[str, Callable[[], Any]] = {
            "start": start_variant(p, obj),
            "ours": ours_variant(p, obj),
            "inputs-only": inputs_only_variant(p, obj),
            "no-mkldnn": inputs_only_variant(p, obj, mkldnn=False),
            "func": func_variant(p, obj, compiled=False),
        }
        if args.compile:
            variants["compiled"] = func_variant(p, obj, compiled=True)
        reference = float(variants["start"]().detach())
        row: dict[str, Any] = {"loss": reference, "ms": {}, "loss_check": {}}
        for vname, run in variants.items():
            t0 = time.perf_counter()
            value = float(run().detach())
            first = time.perf_counter() - t0
            row["loss_check"][vname] = abs(value - reference) / max(abs(reference), 1e-30)
            row["ms"][vname] = 1e3 * timed(run, args.evals, args.repeats)
            if vname == "compiled":
                row["compile_s"] = first
        for k in (int(s) for s in args.batch.split(",") if s):
            run = batched_variant(p, obj, k)
            value = float(run().detach())
            row["loss_check"][f"batched-{k}"] = abs(value - reference) / abs(reference)
            row["ms"][f"batched-{k}"] = 1e3 * timed(run, max(10, args.evals // k), args.repeats)
            row["ms"][f"batched-{k}"] /= k
        single = {v: t for v, t in row["ms"].items() if v in variants or v == "batched-1"}
        row["floor_variant"] = min(single, key=single.get)
        row["floor_ms"] = single[row["floor_variant"]]
        row["ours_over_floor"] = row["ms"]["ours"] / row["floor_ms"]
        row["start_over_floor"] = row["ms"]["start"] / row["floor_ms"]
        results["objectives"][name] = row
    atomic_write_json(Path(args.out), results)
    print(table(results))
    return 0


def table(results: dict[str, Any]) -> str:
    """The per-evaluation times as a markdown table (ms, one thread)."""
    names = list(next(iter(results["objectives"].values()))["ms"])
    lines = [
        "| objective | " + " | ".join(names) + " | floor | ours / floor | start / floor |",
        "|---" * (len(names) + 4) + "|",
    ]
    for obj, row in results["objectives"].items():
        cells = " | ".join(f"{row['ms'][n]:.2f}" for n in names)
        lines.append(
            f"| {obj} | {cells} | {row['floor_ms']:.2f} ({row['floor_variant']}) | "
            f"{row['ours_over_floor']:.2f} | {row['start_over_floor']:.2f} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
