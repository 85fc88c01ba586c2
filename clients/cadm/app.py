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
from fedlab.clients.cadm.model import CadmDecoder, DecoderMeta, pair_key
from fedlab.clients.cadm.workload import CadmWorkload
from fedlab.strategies.fedavg import build_strategy
from flwr.app import ArrayRecord, MetricRecord
from flwr.serverapp import Grid

from fedlab import image_quality
from fedlab.app_check import check_by_building
from fedlab.appspec import AppSpec
from fedlab.client import WEIGHT_TRAINING_HANDLERS
from fedlab.run_folder import RunFolder
from fedlab.server import run_federation, seed_everything

log = logging.getLogger("fedlab.cadm")


def decoder_from_arrays(config: CadmConfig, arrays: ArrayRecord) -> CadmDecoder:
    workload = CadmWorkload(config)
    unet = workload.build_model()
    unet.load_state_dict(arrays.to_torch_state_dict())
    meta = DecoderMeta(pairs=[list(p) for p in config.pair_list()],
                       conditioned=config.conditioned, steps=config.sample_steps)  # fmt: skip
    return CadmDecoder(unet.eval(), meta)


def validation_metrics(config: CadmConfig, decoder: CadmDecoder) -> dict[str, float]:
    """PSNR of bicubic and decoder on the validation clips at every pair (middle CRF)."""
    crfs = config.crf_list()
    crf = crfs[len(crfs) // 2]
    out: dict[str, float] = {}
    for r, b in config.pair_list():
        bic, dec = [], []
        for clip in validation_clips(config.seed):
            up = receive(encode(clip, CodecSpec(r=r, b=b, crf=crf)))
            ref = to_tensor(clip)
            bic.append(image_quality.psnr(up, ref))  # whole-clip PSNR (MSE over all frames)
            dec.append(image_quality.psnr(decoder.restore(up, r, b), ref))
        out[f"psnr-bicubic-{pair_key(r, b)}"] = float(np.mean(bic))
        out[f"psnr-decoder-{pair_key(r, b)}"] = float(np.mean(dec))
    out["psnr-bicubic"] = float(np.mean([v for k, v in out.items() if "bicubic-" in k]))
    out["psnr-decoder"] = float(np.mean([v for k, v in out.items() if "decoder-" in k]))
    out["psnr-gain"] = out["psnr-decoder"] - out["psnr-bicubic"]
    return out


def cadm_server(grid: Grid, config: CadmConfig, run: RunFolder) -> dict[str, Any]:
    workload = CadmWorkload(config)
    seed_everything(config.seed)
    initial = ArrayRecord(workload.build_model().state_dict())
    last: dict[str, ArrayRecord] = {}

    def evaluate_fn(server_round: int, arrays: ArrayRecord) -> MetricRecord:
        torch.set_num_threads(1)
        last["arrays"] = arrays
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
