"""What a ``harmonization`` client reports: its own composites harmonized by every method.

Client ``k`` of ``K`` takes composites ``k, k + K, ...`` of the declared set (test or tuning,
:mod:`fedlab.clients.harmonization.data`), harmonizes them to the background's style with each
method and reports the means over them of every metric of
:mod:`fedlab.clients.harmonization.metrics` as ``<method>-<metric>``, plus ``<method>-seconds``
(wall seconds per image, one thread). Method names: ``cut``, ``histogram``, ``reinhard``,
``sdedit-t<t>``, ``freepih-t<t>-g<g>``. The server's mean weighted by ``num-examples`` is then the
mean over every composite.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import numpy as np
import torch
from fedlab.clients.harmonization.baselines import BASELINES
from fedlab.clients.harmonization.config import HarmonizationConfig
from fedlab.clients.harmonization.data import Composite, composite, composite_set, style_index
from fedlab.clients.harmonization.freepih import FreePIHParams, freepih, sdedit
from fedlab.clients.harmonization.metrics import harmonization_metrics

log = logging.getLogger("fedlab.harmonization")


def client_composites(config: HarmonizationConfig, partition_id: int,
                      num_partitions: int) -> list[Composite]:  # fmt: skip
    specs = composite_set(config.composites)
    if config.max_composites:
        specs = specs[: config.max_composites]
    return [composite(s) for s in specs[partition_id::num_partitions]]


def method_runs(
    config: HarmonizationConfig, unet: torch.nn.Module, scheduler: object
) -> dict[str, Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]]:
    """Method name -> ``(composites, masks, labels) -> outputs`` (batched, [0, 1])."""
    runs: dict[str, Callable] = {}
    methods, steps, seed = config.methods, config.sample_steps, config.sample_seed
    for name in ("cut", "histogram", "reinhard"):
        if name in methods:
            runs[name] = lambda x, m, _y, f=BASELINES[name]: torch.stack(
                [f(xi, mi) for xi, mi in zip(x, m, strict=True)]
            )
    if "sdedit" in methods:
        for t in config.sdedit_t:
            runs[f"sdedit-t{t}"] = lambda x, _m, y, t=t: sdedit(
                unet, scheduler, x, y, t, steps=steps, seed=seed
            )
    if "freepih" in methods:
        for t in config.freepih_t:
            for g in config.guidance:
                params = FreePIHParams(t_start=t, steps=steps, guidance=g,
                                       content_weight=config.content_weight,
                                       style_weight=config.style_weight)  # fmt: skip
                runs[f"freepih-t{t}-g{g:g}"] = lambda x, m, y, p=params: freepih(
                    unet, scheduler, x, m, y, p, seed=seed
                )
    return runs


def evaluate_client(
    config: HarmonizationConfig, unet: torch.nn.Module, scheduler: object, partition_id: int,
    num_partitions: int,
) -> dict[str, float]:  # fmt: skip
    """Harmonize this client's composites with every method; means of every metric."""
    items = client_composites(config, partition_id, num_partitions)
    if not items:
        return {"num-examples": 0}
    x = torch.stack([c.composite for c in items])
    masks = torch.stack([c.mask for c in items])
    labels = torch.tensor([style_index(c.style) for c in items])
    out: dict[str, float] = {"num-examples": len(items)}
    for name, run in method_runs(config, unet, scheduler).items():
        start = time.perf_counter()
        with torch.no_grad():
            images = run(x, masks, labels)
        out[f"{name}-seconds"] = (time.perf_counter() - start) / len(items)
        rows = [harmonization_metrics(o, c.foreground, c.background, c.mask)
                for o, c in zip(images, items, strict=True)]  # fmt: skip
        for metric in rows[0]:
            out[f"{name}-{metric}"] = float(np.mean([r[metric] for r in rows]))
        log.info("client %d %s: style-dist %.3f ssim %.3f", partition_id, name,
                 out[f"{name}-style-dist"], out[f"{name}-ssim"])  # fmt: skip
    return out
