"""``fedlab stream encode|decode|eval``: CaDM on a user's clip.

``fedlab stream encode --in clip.mp4 --out out/ --r 2 --b 6 --crf 28`` writes
``out/clip.mkv`` (the reduced stream; its size is the bytes printed) and ``out/clip.cadm.json``
(r, b, codec, CRF, frame count and size: the receiver's side information, a few bytes, not
counted). ``fedlab stream decode --in out/clip.mkv --out out/`` restores it with the shipped
codec-aware decoder (``--decoder DIR`` for another, ``--decoder none`` for bicubic only) and
writes ``out/clip_restored.mp4``. ``fedlab stream eval --in clip.mp4 --out out/`` runs the
rate-distortion comparison (x264 full resolution, bicubic, CaDM) over a CRF sweep and writes
``rd.json`` and ``rd.png``. ``--in`` also takes a bundled clip name (carphone, bikes, ...).
Frames are centre-cropped to sides divisible by ``2 r``. Progress bars on stderr.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import numpy as np
import torch

from fedlab.errors import FedlabError

log = logging.getLogger("fedlab.cadm")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``stream`` to the ``fedlab`` console script."""
    p = subparsers.add_parser("stream", help="CaDM: codec-aware restoration of a video stream")
    sub = p.add_subparsers(dest="stream_command", required=True)
    enc = sub.add_parser("encode", help="reduce (r, b) and encode a clip; print its bytes")
    _common(enc)
    enc.add_argument("--r", type=int, default=2, help="resolution factor (default 2)")
    enc.add_argument("--b", type=int, default=8, help="bit-depth 1-8 (default 8)")
    enc.add_argument("--codec", default="x264", help="x264 (default), x265 or ffv1")
    enc.add_argument("--crf", type=int, default=28, help="x264/x265 CRF (default 28)")
    enc.set_defaults(func=encode_command)
    dec = sub.add_parser("decode", help="decode a stream written by encode and restore it")
    dec.add_argument("--in", dest="input", required=True, help="stream written by encode")
    dec.add_argument("--out", required=True, help="output folder")
    _decoder_args(dec)
    dec.set_defaults(func=decode_command)
    ev = sub.add_parser("eval", help="rate-distortion of x264, bicubic and CaDM on a clip")
    _common(ev)
    ev.add_argument("--pairs", default="2x8,2x6,4x8,4x5", help="RxB pairs (default the study's)")
    ev.add_argument("--crfs", default="23,28,33,38", help="CRFs of the reduced streams")
    ev.add_argument("--x264-crfs", default="23,28,33,38,43,48", help="CRFs of plain x264")
    ev.add_argument("--no-vmaf", action="store_true", help="skip VMAF (faster)")
    _decoder_args(ev)
    ev.set_defaults(func=eval_command)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--in", dest="input", required=True, help="video file or bundled clip name")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--frames", type=int, default=30, help="frames to read (0: all; default 30)")


def _decoder_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--decoder", default="shipped",
                   help="decoder folder, 'shipped' (default) or 'none' (bicubic)")  # fmt: skip
    p.add_argument("--steps", type=int, default=0, help="DDIM steps (default: the decoder's)")


def load_input(name: str, frames: int) -> np.ndarray:
    """A local video file, or a bundled clip by name (no download)."""
    from fedlab.clients.video import BUNDLED_CLIPS, bundled_clip, read_clip

    if frames < 0:
        raise FedlabError(f"--frames must be >= 0, got {frames}")
    if not Path(name).exists() and name in BUNDLED_CLIPS:
        return bundled_clip(name, max_frames=frames)
    return read_clip(name, max_frames=frames)


def crop_for(frames: np.ndarray, r: int) -> np.ndarray:
    """Centre-crop to sides divisible by ``2 r``."""
    _, h, w, _ = frames.shape
    m = 2 * r
    nh, nw = h - h % m, w - w % m
    if nh == 0 or nw == 0:
        raise FedlabError(f"the clip's {h}x{w} frames are too small for r={r}")
    if (nh, nw) != (h, w):
        log.info("cropping %dx%d to %dx%d (divisible by 2r = %d)", h, w, nh, nw, m)
    y, x = (h - nh) // 2, (w - nw) // 2
    return np.ascontiguousarray(frames[:, y : y + nh, x : x + nw])


def resolve_decoder(value: str):  # noqa: ANN201
    from fedlab.clients.cadm.config import SHIPPED_DECODER
    from fedlab.clients.cadm.model import load_decoder

    if value == "none":
        return None
    return load_decoder(SHIPPED_DECODER if value == "shipped" else value)


def encode_command(args: argparse.Namespace) -> int:
    from fedlab.clients.cadm.codec import CodecSpec, encode

    from fedlab.atomic import atomic_write_bytes, atomic_write_text

    spec = CodecSpec(r=args.r, b=args.b, codec=args.codec, crf=args.crf)  # validates first
    frames = crop_for(load_input(args.input, args.frames), spec.r)
    encoded = encode(frames, spec)
    stem = Path(args.input).stem
    path = atomic_write_bytes(Path(args.out) / f"{stem}.mkv", encoded.data)
    side = {"r": spec.r, "b": spec.b, "codec": spec.codec, "crf": spec.crf,
            "frames": encoded.frames, "height": encoded.height, "width": encoded.width}  # fmt: skip
    atomic_write_text(Path(args.out) / f"{stem}.cadm.json", json.dumps(side, indent=2))
    print(f"wrote {path}: {encoded.total_bytes} bytes for {encoded.frames} frames "
          f"({encoded.width}x{encoded.height} sent at r={spec.r}, b={spec.b})")  # fmt: skip
    return 0


def decode_file(path: str | Path, out: str | Path, *, decoder: str = "shipped", steps: int = 0,
                progress: bool = True) -> Path:  # fmt: skip
    """Decode a stream written by ``encode``, restore it, write ``<stem>_restored.mp4``."""
    from fedlab.clients.cadm.codec import CodecSpec, Encoded, receive, to_uint8
    from fedlab.clients.video import write_clip

    path = Path(path)
    if not path.is_file():
        raise FedlabError(f"stream file {str(path)!r} does not exist; give a file from encode")
    side_path = path.with_suffix(".cadm.json")
    if not side_path.is_file():
        raise FedlabError(f"{str(side_path)!r} is missing; decode needs the file encode wrote")
    side = json.loads(side_path.read_text())
    spec = CodecSpec(r=side["r"], b=side["b"], codec=side["codec"], crf=side["crf"])
    restorer = resolve_decoder(decoder)
    if restorer is not None:
        restorer.label_of(spec.r, spec.b)  # refuse a pair never trained on, before decoding
    encoded = Encoded(path.read_bytes(), spec, side["frames"], side["height"], side["width"])
    up = receive(encoded)
    if restorer is not None:
        up = restorer.restore(up, spec.r, spec.b, steps=steps, progress=progress)
    result = write_clip(Path(out) / f"{path.stem}_restored.mp4", to_uint8(up), crf=10)
    return result


def decode_command(args: argparse.Namespace) -> int:
    torch.set_num_threads(1)
    result = decode_file(args.input, args.out, decoder=args.decoder, steps=args.steps)
    print(f"wrote {result}")
    return 0


def eval_command(args: argparse.Namespace) -> int:
    from fedlab.clients.cadm.config import parse_crfs, parse_pairs
    from fedlab.clients.cadm.evaluate import bd_rates, evaluate_clip, rd_plot

    from fedlab.atomic import atomic_write, atomic_write_text

    torch.set_num_threads(1)
    pairs = parse_pairs(args.pairs, "--pairs")
    crfs, x264_crfs = parse_crfs(args.crfs, "--crfs"), parse_crfs(args.x264_crfs, "--x264-crfs")
    restorer = resolve_decoder(args.decoder)
    methods: dict = {"bicubic": (None, 0)}
    if restorer is not None:
        for r, b in pairs:
            restorer.label_of(r, b)
        methods["cadm"] = (lambda up, r, b: restorer.restore(up, r, b, steps=args.steps),
                           restorer.model_bytes())  # fmt: skip
    frames = crop_for(load_input(args.input, args.frames), max(r for r, _ in pairs))
    name = Path(args.input).stem
    rows = evaluate_clip(frames, name, pairs=pairs, crfs=crfs, x264_crfs=x264_crfs,
                         methods=methods, with_vmaf=not args.no_vmaf, progress=True)  # fmt: skip
    metric = "psnr" if args.no_vmaf else "vmaf"
    bd = {f"{m} r{r}b{b}": v for (_, m, r, b), v in bd_rates(rows, metric).items()}
    out = Path(args.out)
    atomic_write_text(out / "rd.json", json.dumps({"rows": rows, f"bd-rate-{metric}": bd},
                                                  indent=1))  # fmt: skip
    atomic_write(out / "rd.png", lambda p: rd_plot(rows, p))
    for key, value in bd.items():
        print(f"{key}: BD-rate ({metric}) vs x264 = "
              f"{'n/a' if value is None else f'{value:+.1f}%'}")  # fmt: skip
    print(f"wrote {out / 'rd.json'} and {out / 'rd.png'}")
    return 0
