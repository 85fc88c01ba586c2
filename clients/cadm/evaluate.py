"""Rate-distortion evaluation of CaDM and its baselines on a clip (the study's and the CLI's).

For a clip and every ``(r, b)`` pair and CRF the clip is encoded once (x264 unless told), the
stream's bytes measured, the stream decoded and each method applied to the same reception:

- ``bicubic``: bit-depth expansion and bicubic upsampling only;
- ``cnn``: the NAS/NEMO-sized CNN (:class:`.cadm_model.SmallSR`) on the bicubic reception;
- ``cadm-unaware``: the diffusion decoder trained with one class (no ``(r, b)`` condition);
- ``cadm``: the codec-aware diffusion decoder (``(r, b)`` as class embedding).

``x264`` is plain full-resolution x264 over its own CRF sweep (no post-processing). Every row
holds the stream bytes, the decoder's model bytes, PSNR, SSIM, VMAF, flicker and the
decoder's single-thread frames per second.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from fedlab.clients.cadm.codec import CodecSpec, encode, receive, to_tensor
from fedlab.clients.cadm.metrics import bd_rate, clip_metrics

Restorer = Callable[[torch.Tensor, int, int], torch.Tensor]


def evaluate_clip(
    clip: np.ndarray, name: str, *, pairs: list[tuple[int, int]], crfs: list[int],
    x264_crfs: list[int], methods: dict[str, tuple[Restorer | None, int]],
    codec: str = "x264", with_vmaf: bool = True, progress: bool = False,
) -> list[dict[str, Any]]:  # fmt: skip
    """Rows of the rate-distortion table of one clip.

    ``methods`` maps a name to ``(restore(up, r, b) or None for bicubic, model bytes)``.
    """
    ref = to_tensor(clip)
    jobs = [(1, 8, crf, None) for crf in x264_crfs]
    jobs += [(r, b, crf, m) for r, b in pairs for crf in crfs for m in methods]
    iterator: Any = jobs
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(jobs, desc=f"eval {name}", unit="run")
    rows: list[dict[str, Any]] = []
    cache: dict[tuple[int, int, int], tuple[int, torch.Tensor]] = {}
    for r, b, crf, method in iterator:
        key = (r, b, crf)
        if key not in cache:
            cache.clear()
            encoded = encode(clip, CodecSpec(r=r, b=b, crf=crf, codec=codec))
            cache[key] = (encoded.total_bytes, receive(encoded))
        stream_bytes, up = cache[key]
        restore, model_bytes = (None, 0) if method is None else methods[method]
        start = time.perf_counter()
        out = up if restore is None else restore(up, r, b)
        seconds = time.perf_counter() - start
        row = {
            "clip": name, "method": method or codec, "r": r, "b": b, "crf": crf,
            "frames": len(clip), "bytes": stream_bytes, "model-bytes": model_bytes,
            "decode-fps": len(clip) / seconds if restore is not None else None,
        }  # fmt: skip
        row.update(clip_metrics(out, ref, with_vmaf=with_vmaf))
        rows.append(row)
    return rows


def curves(rows: list[dict], metric: str) -> dict[tuple, tuple[list[float], list[float]]]:
    """(clip, method, r, b) -> (bytes, metric) sorted by bytes."""
    out: dict[tuple, list] = {}
    for row in rows:
        out.setdefault((row["clip"], row["method"], row["r"], row["b"]), []).append(
            (row["bytes"], row[metric])
        )
    return {k: tuple(map(list, zip(*sorted(v), strict=True))) for k, v in out.items()}


def bd_rates(rows: list[dict], metric: str, reference: str = "x264") -> dict[tuple, float | None]:
    """BD-rate (%) of every (clip, method, r, b) curve against the clip's ``reference``."""
    c = curves(rows, metric)
    out = {}
    for (clip, method, r, b), (rate, quality) in c.items():
        if method == reference:
            continue
        ref = c[(clip, reference, 1, 8)]
        out[(clip, method, r, b)] = bd_rate(ref[0], ref[1], rate, quality)
    return out


def rd_plot(rows: list[dict], path: Any) -> None:
    """Bytes against PSNR, SSIM (and VMAF when measured), one row of panels per clip."""
    from matplotlib.figure import Figure  # no pyplot: no global backend or figure state

    metrics = [m for m in ("psnr", "ssim", "vmaf") if m in rows[0]]
    clips = list(dict.fromkeys(r["clip"] for r in rows))
    fig = Figure(figsize=(5 * len(metrics), 4.2 * len(clips)))
    axes = fig.subplots(len(clips), len(metrics), squeeze=False)
    colours = {"x264": "k", "bicubic": "tab:gray", "cnn": "tab:green", "diffsr": "tab:purple",
               "cadm-unaware": "tab:orange", "cadm": "tab:blue"}  # fmt: skip
    markers = {(1, 8): "o", (2, 8): "o", (2, 6): "s", (4, 8): "^", (4, 5): "v"}
    for i, clip in enumerate(clips):
        for j, metric in enumerate(metrics):
            ax = axes[i][j]
            for (c, method, r, b), (rate, q) in curves(rows, metric).items():
                if c != clip:
                    continue
                label = method if method == "x264" else f"{method} ({r},{b})"
                ax.plot(np.array(rate) / 1e3, q, marker=markers.get((r, b), "o"),
                        color=colours[method], lw=2 if method in ("x264", "cadm") else 1,
                        label=label, alpha=0.9)  # fmt: skip
            ax.set_xscale("log")
            ax.set_xlabel("stream KB")
            ax.set_ylabel(metric.upper())
            ax.set_title(f"{clip}: {metric.upper()}")
            ax.grid(alpha=0.3)
    axes[0][-1].legend(fontsize=6, ncol=2)
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=90)
