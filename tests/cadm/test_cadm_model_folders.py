"""CaDM's decoder and CNN folders go through the one model-folder step
(:mod:`fedlab.model_folder`): ``cadm.json`` typed and bounded, the UNet checked before anything
is allocated and matched to the pairs."""

from __future__ import annotations

import json
import shutil

import pytest
from fedlab.clients.cadm.model import SmallSR, build_decoder_unet, load_decoder, load_small_sr

from fedlab.errors import FedlabError


@pytest.fixture
def decoder(tmp_path):
    from fedlab.clients.cadm.config import SHIPPED_DECODER

    shutil.copytree(SHIPPED_DECODER, tmp_path / "dec")
    return tmp_path / "dec"


def _one_line(exc: pytest.ExceptionInfo, *needles: str) -> None:
    message = str(exc.value)
    assert "\n" not in message, message
    for needle in needles:
        assert needle in message, message


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ('{"pairs": "abc"}', "field pairs must be a list of 1-256 items"),
        ('{"pairs": [[2, 9]]}', "field pairs must be"),
        ('{"steps": ' + "1" * 5000 + "}", "more than 4300 digits"),
        ('{"residual_scale": NaN}', "field residual_scale must be a finite number"),
        ('{"conditioned": 1}', "field conditioned must be true or false"),
        ('{"colour": true}', "unknown field 'colour'"),
        ("[]", "must hold a JSON object"),
    ],
)
def test_a_bad_decoder_record_is_one_line(decoder, text, needle):
    (decoder / "cadm.json").write_text(text)
    with pytest.raises(FedlabError) as exc:
        load_decoder(decoder)
    _one_line(exc, "decoder folder", str(decoder), "cadm.json", needle)


def test_a_unet_that_does_not_fit_the_decoder_is_refused(decoder):
    meta = json.loads((decoder / "cadm.json").read_text())
    (decoder / "cadm.json").write_text(json.dumps({**meta, "pairs": meta["pairs"][:2]}))
    with pytest.raises(FedlabError) as exc:
        load_decoder(decoder)
    _one_line(exc, "field num_class_embeds is 4", "needs 2")
    shutil.rmtree(decoder / "unet")
    build_decoder_unet("tiny", num_pairs=2, conditioned=True).save_pretrained(decoder / "unet")
    assert load_decoder(decoder).pairs == [(2, 8), (2, 6)]


def test_huge_decoder_channels_are_refused_before_allocation(decoder):
    path = decoder / "unet" / "config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()),
                                "block_out_channels": [4096, 8192, 8192]}))  # fmt: skip
    with pytest.raises(FedlabError) as exc:
        load_decoder(decoder)
    _one_line(exc, "decoder UNet folder", "parameters, over the cap of", "--max-parameters")


def test_the_cnn_folder_goes_through_the_step(tmp_path):
    SmallSR(width=4, blocks=1).save_pretrained(tmp_path, safe_serialization=True)
    assert load_small_sr(tmp_path).config.width == 4
    (tmp_path / "config.json").write_text('{"width": [4]}')
    with pytest.raises(FedlabError) as exc:
        load_small_sr(tmp_path)
    _one_line(exc, "CNN folder", "field width must be an integer")
