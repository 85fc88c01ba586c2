"""``fedlab harmonize`` on files with a tiny prior: result, grid, bit-exact background, and
one-line errors for a mask of another size, an empty mask, an unknown style, a missing file."""

from __future__ import annotations

import tempfile

import numpy as np
import pytest
import torch
from fedlab.clients.harmonization.command import harmonize_files
from fedlab.clients.harmonization.workload import save_prior
from PIL import Image

from fedlab.diffusion import build_unet
from fedlab.errors import FedlabError


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("pih")
    torch.manual_seed(0)
    save_prior(build_unet("tiny", num_class_embeds=5).eval(), root / "prior")
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(root / "bg.png")
    Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(root / "fg.png")
    mask = np.zeros((16, 16), np.uint8)
    mask[4:11, 3:12] = 255
    Image.fromarray(mask).save(root / "mask.png")
    Image.fromarray(np.zeros((16, 16), np.uint8)).save(root / "empty.png")
    Image.fromarray(mask[:12]).save(root / "short.png")
    return root


def _run(files, **kw):
    # A fresh --out per call: an existing output is refused (tested in test_hostile_inputs).
    args = {"fg": files / "fg.png", "mask": files / "mask.png", "bg": files / "bg.png",
            "out": tempfile.mkdtemp(dir=files), "model": str(files / "prior"), "steps": 2,
            "t": 100, "progress": False}  # fmt: skip
    return harmonize_files(**{**args, **kw})


@pytest.mark.parametrize("style", ["ink", ""])
def test_writes_result_and_grid_with_the_background_bit_exact(files, style):
    result, grid = _run(files, style=style)
    assert grid.is_file()
    bg = np.asarray(Image.open(files / "bg.png"))
    out = np.asarray(Image.open(result))
    mask = np.asarray(Image.open(files / "mask.png")) > 0
    assert np.array_equal(out[~mask], bg[~mask])
    assert not np.array_equal(out[mask], np.asarray(Image.open(files / "fg.png"))[mask])


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"mask": "short.png"}, "the mask is 12x16 but the background is 16x16"),
        ({"mask": "empty.png"}, "the mask is empty"),
        ({"style": "oil"}, "style 'oil' was not trained on; this prior knows: posterize"),
        ({"fg": "missing.png"}, "does not exist"),
        ({"style": "ink", "mask": "empty.png"}, "the mask is empty"),
    ],
)
def test_bad_inputs_are_one_line_errors(files, kw, message):
    kw = {k: (files / v if k in ("mask", "fg") else v) for k, v in kw.items()}
    with pytest.raises(FedlabError, match=message) as info:
        _run(files, **kw)
    assert "\n" not in str(info.value)


def test_unconditional_prior_is_refused(files, tmp_path):
    build_unet("tiny").save_pretrained(tmp_path / "uncond", safe_serialization=True)
    with pytest.raises(FedlabError, match="not style-conditioned"):
        _run(files, model=str(tmp_path / "uncond"))
