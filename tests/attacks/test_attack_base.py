"""AttackInput: update -> gradient conversion, refusals, model rebuild checks."""

from __future__ import annotations

import pytest
import torch
from attack_helpers import crop_image, fedsgd_input
from fedlab.attacks.base import AttackInput, ModelSpec, labels_from_weight_gradient

from fedlab.errors import FedlabError
from fedlab.registry import ATTACKS


def _batch():
    return crop_image("astronaut", 16)[None], torch.tensor([4])


def test_fedsgd_update_converts_back_to_the_gradient():
    x, y = _batch()
    grad_inp = fedsgd_input(x, y, seed=1)
    upd_inp = fedsgd_input(x, y, seed=1, lr=0.05)
    for g, h in zip(grad_inp.target_gradients(), upd_inp.target_gradients(), strict=True):
        torch.testing.assert_close(g, h, rtol=1e-5, atol=1e-7)
    assert upd_inp.update is not None
    torch.testing.assert_close(upd_inp.update[0], -0.05 * grad_inp.gradients[0])


def test_several_local_steps_are_refused():
    x, y = _batch()
    inp = fedsgd_input(x, y, lr=0.1)
    inp.local_steps = 5
    with pytest.raises(FedlabError, match="5 local steps"):
        inp.target_gradients()


@pytest.mark.parametrize("lr", [None, 0.0, -1.0, float("nan")])
def test_update_without_a_positive_lr_is_refused(lr):
    x, y = _batch()
    inp = fedsgd_input(x, y, lr=0.1)
    inp.lr = lr
    with pytest.raises(FedlabError, match="lr"):
        inp.target_gradients()


def test_gradients_and_update_together_are_refused():
    x, y = _batch()
    inp = fedsgd_input(x, y)
    with pytest.raises(FedlabError, match="exactly one"):
        AttackInput(
            model=inp.model,
            params=inp.params,
            batch_size=1,
            image_shape=(3, 16, 16),
            num_classes=10,
            gradients=inp.gradients,
            update=inp.gradients,
            lr=1.0,
        )


def test_non_finite_gradients_are_refused():
    x, y = _batch()
    inp = fedsgd_input(x, y)
    grads = [g.clone() for g in inp.gradients]
    grads[2][0] = float("nan")
    with pytest.raises(FedlabError, match="NaN"):
        AttackInput(
            model=inp.model,
            params=inp.params,
            batch_size=1,
            image_shape=(3, 16, 16),
            num_classes=10,
            gradients=grads,
        )


def test_shapes_that_disagree_with_the_model_are_refused():
    x, y = _batch()
    inp = fedsgd_input(x, y)
    inp.model = ModelSpec("lenet", {"num_classes": 10, "image_size": 32})
    with pytest.raises(FedlabError, match="fc.weight.*expects"):
        inp.build_model()


def test_unknown_model_and_attack_names_list_the_known_ones():
    with pytest.raises(FedlabError, match="lenet"):
        ModelSpec("resnet-9000").build()
    with pytest.raises(FedlabError, match="dlg, idlg, ig"):
        ATTACKS.get("nope")


def test_batch_label_recovery_finds_distinct_labels():
    images = torch.stack([crop_image(n, 16) for n in ("astronaut", "chelsea", "coffee")])
    labels = torch.tensor([7, 1, 4])
    inp = fedsgd_input(images, labels, init="default", seed=3)
    w, b = inp.gradients[-2], inp.gradients[-1]
    assert labels_from_weight_gradient(w, 3, b).tolist() == [1, 4, 7]


def test_initial_images_follow_the_normalisation_and_refuse_unknown_inits():
    x, y = _batch()
    inp = fedsgd_input(x, y)
    inp.mean, inp.std = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)
    gray = inp.initial_images("gray", torch.Generator().manual_seed(0))
    assert gray.shape == (1, 3, 16, 16) and abs(float(gray.mean())) < 0.1  # (0.5-0.5)/0.25
    torch.testing.assert_close(inp.to_unit_range(gray), (gray * 0.25 + 0.5).clamp(0, 1))
    with pytest.raises(FedlabError, match="'randn', 'gray'"):
        inp.initial_images("zeros", torch.Generator())
