"""The ``streaming_cadm`` app: federated training of CaDM's codec-aware decoder (FedAvg).

``flower-simulation --app fedlab.apps:streaming_cadm`` runs, with its defaults, 4 clients that
each hold different training clips (procedural pan/sprite clips and bigbuckbunny crops,
:mod:`.cadm_data`), encode them with x264 at every ``(r, b)`` pair and CRF, and train the
conditional decoder UNet on patch pairs through the shared training loop; the server averages
it (Flower's FedAvg), and after every round restores the validation clips (never trained on)
at every pair and reports PSNR of the bicubic reception and of the decoder. The final decoder
is written to ``<run>/decoder`` (``save_pretrained`` UNet + ``cadm.json``); ``conditioned=false``
trains the codec-unaware ablation.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch
from fedlab.clients.cadm.codec import CodecSpec, encode, receive, to_tensor
from fedlab.clients.cadm.config import CadmConfig
from fedlab.clients.cadm.data import validation_clips
from fedlab.clients.cadm.model import CadmDecoder, DecoderMeta, load_decoder, pair_key
from fedlab.clients.cadm.workload import CadmWorkload
from fedlab.strategies.fedavg import build_strategy
from flwr.app import ArrayRecord, MetricRecord
from flwr.serverapp import Grid

from fedlab import image_quality
from fedlab.app_check import check_by_building
from fedlab.appspec import AppSpec
from fedlab.client import WEIGHT_TRAINING_HANDLERS
from fedlab.errors import FedlabError
from fedlab.run_folder import RunFolder
from fedlab.server import run_federation, seed_everything

log = logging.getLogger("fedlab.cadm")


def decoder_from_arrays(config: CadmConfig, arrays: ArrayRecord) -> CadmDecoder:
    workload = CadmWorkload(config)
    unet = workload.build_model()
    unet.load_state_dict(arrays.to_torch_state_dict())
    meta = DecoderMeta(pairs=[list(p) for p in config.pair_list()],
                       conditioned=config.conditioned, steps=config.sample_steps,
                       residual_scale=config.residual_scale)  # fmt: skip
    return CadmDecoder(unet.eval(), meta)


def validation_psnr(
    clip: np.ndarray, r: int, b: int, crf: int, restore: Any = None
) -> tuple[float, float]:  # fmt: skip
    """Whole-clip PSNR (MSE over all frames) of the bicubic reception and of ``restore(up, r,
    b)`` (bicubic again when None) on one clip sent at ``(r, b)`` and ``crf`` (x264)."""
    up = receive(encode(clip, CodecSpec(r=r, b=b, crf=crf)))
    ref = to_tensor(clip)
    out = up if restore is None else restore(up, r, b)
    return image_quality.psnr(up, ref), image_quality.psnr(out, ref)


def validation_metrics(config: CadmConfig, decoder: CadmDecoder) -> dict[str, float]:
    """PSNR of bicubic and decoder on the validation clips at every pair (middle CRF)."""
    crfs = config.crf_list()
    crf = crfs[len(crfs) // 2]
    out: dict[str, float] = {}
    clips = validation_clips(config.clip_seed, config.validation_frames)
    for r, b in config.pair_list():
        both = [validation_psnr(clip, r, b, crf, decoder.restore) for clip in clips]
        out[f"psnr-bicubic-{pair_key(r, b)}"] = float(np.mean([x[0] for x in both]))
        out[f"psnr-decoder-{pair_key(r, b)}"] = float(np.mean([x[1] for x in both]))
    out["psnr-bicubic"] = float(np.mean([v for k, v in out.items() if "bicubic-" in k]))
    out["psnr-decoder"] = float(np.mean([v for k, v in out.items() if "decoder-" in k]))
    out["psnr-gain"] = out["psnr-decoder"] - out["psnr-bicubic"]
    return out


def cadm_server(grid: Grid, config: CadmConfig, run: RunFolder) -> dict[str, Any]:
    workload = CadmWorkload(config)
    seed_everything(config.seed)
    model = workload.build_model()
    if config.init_from:
        decoder = load_decoder(config.init_from)
        try:
            model.load_state_dict(decoder.unet.state_dict())
        except RuntimeError:
            raise FedlabError(
                f"init-from {config.init_from!r} holds another UNet than unet={config.unet!r}; "
                "give a decoder trained with the same unet or leave init-from empty"
            ) from None
        log.info("starting from %s", config.init_from)
    initial = ArrayRecord(model.state_dict())
    last: dict[str, ArrayRecord] = {}

    def evaluate_fn(server_round: int, arrays: ArrayRecord) -> MetricRecord | None:
        last["arrays"] = arrays
        final = server_round == config.num_server_rounds
        if server_round % config.validate_every and not final:
            return None
        torch.set_num_threads(1)
        return MetricRecord(validation_metrics(config, decoder_from_arrays(config, arrays)))

    summary = run_federation(
        grid, config, run,
        strategy_factory=lambda num_nodes: build_strategy(config, num_nodes),
        initial_arrays=initial, evaluate_fn=evaluate_fn,
    )  # fmt: skip
    if config.save_decoder and "arrays" in last:
        folder = decoder_from_arrays(config, last["arrays"]).save(run.path / "decoder")
        log.info("decoder saved: %s", folder)
    return summary


streaming_cadm = AppSpec(
    extras=("video", "diffusion"),
    name="streaming_cadm",
    config_cls=CadmConfig,
    server_fn=cadm_server,  # type: ignore[arg-type]
    client_handlers=WEIGHT_TRAINING_HANDLERS,
    description="CaDM: codec-aware diffusion decoder trained federatedly on encoded clips.",
    check=check_by_building(build_strategy),
)
