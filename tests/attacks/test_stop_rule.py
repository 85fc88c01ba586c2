"""The stops of DLG's L-BFGS loop (issue 37): they read the attack's own loss, nothing else."""

from __future__ import annotations

import torch
from attack_helpers import crop_image, fedsgd_input
from fedlab.attacks.dlg import DLG, match_evaluation

from fedlab import image_quality


def _run_with_truth(truth: torch.Tensor, inp, attack_cls=DLG):
    """Run the attack with a monitor scoring every chunk against ``truth``; what it saw."""
    seen: list[float] = []

    def monitor(x: torch.Tensor, evals: int) -> None:
        seen.append(image_quality.psnr(truth[0], inp.to_unit_range(x)[0]))

    result = attack_cls(max_iterations=600, restarts=1, monitor=monitor).reconstruct(inp)
    return result, seen


def test_a_wrong_ground_truth_changes_nothing_about_when_a_run_stops():
    x, y = crop_image("coffee", 16)[None], torch.tensor([4])
    inp = fedsgd_input(x, y, seed=1)
    right, psnr_right = _run_with_truth(x, inp)
    wrong, psnr_wrong = _run_with_truth(1.0 - x, inp)
    assert psnr_right != psnr_wrong  # the two monitors did see different truths
    assert max(psnr_right) > 30 > max(psnr_wrong)
    assert right.iterations == wrong.iterations
    assert right.history == wrong.history
    assert right.loss == wrong.loss
    assert torch.equal(right.images, wrong.images)
    assert torch.equal(right.labels, wrong.labels)


def test_match_evaluation_equals_the_backward_closure():
    x, y = crop_image("chelsea", 16)[None], torch.tensor([2])
    inp = fedsgd_input(x, y, seed=0)
    model, target = inp.build_model(), inp.target_gradients()
    dummy = (0.5 + 0.1 * torch.randn(1, 3, 16, 16)).requires_grad_(True)
    task = torch.nn.functional.cross_entropy(model(dummy), y)
    grads = torch.autograd.grad(task, list(model.parameters()), create_graph=True)
    expected = sum(((g - t) ** 2).sum() for g, t in zip(grads, target, strict=True))
    expected.backward()  # into the parameters too, which the evaluation must not do
    for p in model.parameters():
        p.grad = None
    loss, (gx,) = match_evaluation(model, target, labels=y)(dummy)
    assert torch.allclose(loss, expected.detach(), rtol=1e-5)
    assert torch.allclose(gx, dummy.grad, rtol=1e-3, atol=1e-5 * float(gx.abs().max()))
    assert all(p.grad is None for p in model.parameters())
