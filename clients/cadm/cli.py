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

Every argument and input is validated before any work: numeric flags are bounded when parsed
(``--crf`` 0-51, ``--b`` 1-8, ``--frames`` up to ``--max-frames``, ...), videos go through
:func:`fedlab.clients.video.open_video`, side files through
:func:`fedlab.clients.cadm.side_file.read_side_file` and are checked against their stream, and
outputs are named first: an existing one is refused unless ``--overwrite``. ``--check`` stops
after that validation with one ``ok:`` line. Refusals are one line, exit code 2.
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import torch

from fedlab.command_args import (
    CHECK_HELP,
    CRF,
    FRAMES,
    MAX_FRAMES_HELP,
    MAX_FRAMES_TYPE,
    add_max_parameters,
    check_frames,
    existing_folder,
    integer,
    naming,
    one_line_errors,
    plan_outputs,
    shown,
    user_path,
)
from fedlab.errors import FedlabError
from fedlab.extras import require
from fedlab.limits import MAX_CLIP_BYTES, MAX_FRAME_SIDE, MAX_FRAMES, MAX_MODEL_PARAMETERS
from fedlab.outputs import OVERWRITE_HELP

log = logging.getLogger("fedlab.cadm")

#: DDIM steps of ``--steps``: the decoder's diffusion has 1000 timesteps.
MAX_STEPS = 1000
#: Items one ``--pairs`` / ``--crfs`` / ``--x264-crfs`` sweep may name.
MAX_SWEEP = 64


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``stream`` to the ``fedlab`` console script."""
    p = one_line_errors(
        subparsers.add_parser("stream", help="CaDM: codec-aware restoration of a video stream")
    )
    sub = p.add_subparsers(dest="stream_command", required=True)
    enc = one_line_errors(
        sub.add_parser("encode", help="reduce (r, b) and encode a clip; print its bytes")
    )
    _common(enc)
    enc.add_argument("--r", type=integer(1, MAX_FRAME_SIDE // 2), default=2,
                     help="resolution factor (default 2)")  # fmt: skip
    enc.add_argument("--b", type=integer(1, 8, " (bit-depth per RGB channel)"), default=8,
                     help="bit-depth 1-8 (default 8)")  # fmt: skip
    enc.add_argument("--codec", default="x264", help="x264 (default), x265 or ffv1")
    enc.add_argument("--crf", type=CRF, default=28, help="x264/x265 CRF 0-51 (default 28)")
    enc.set_defaults(func=encode_command)
    dec = one_line_errors(
        sub.add_parser("decode", help="decode a stream written by encode and restore it")
    )
    dec.add_argument("--in", dest="input", required=True, help="stream written by encode")
    _outputs(dec)
    dec.add_argument("--max-frames", type=MAX_FRAMES_TYPE, default=MAX_FRAMES,
                     help=MAX_FRAMES_HELP)  # fmt: skip
    _decoder_args(dec)
    dec.set_defaults(func=decode_command)
    ev = one_line_errors(
        sub.add_parser("eval", help="rate-distortion of x264, bicubic and CaDM on a clip")
    )
    _common(ev)
    ev.add_argument("--pairs", default="2x8,2x6,4x8,4x5", help="RxB pairs (default the study's)")
    ev.add_argument("--crfs", default="23,28,33,38", help="CRFs of the reduced streams")
    ev.add_argument("--x264-crfs", default="23,28,33,38,43,48", help="CRFs of plain x264")
    ev.add_argument("--no-vmaf", action="store_true", help="skip VMAF (faster)")
    _decoder_args(ev)
    ev.set_defaults(func=eval_command)


def _outputs(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)
    p.add_argument("--check", action="store_true", help=CHECK_HELP)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--in", dest="input", required=True, help="video file or bundled clip name")
    _outputs(p)
    p.add_argument("--frames", type=FRAMES, default=30,
                   help="frames to read (0: all; default 30)")  # fmt: skip
    p.add_argument("--max-frames", type=MAX_FRAMES_TYPE, default=MAX_FRAMES,
                   help=MAX_FRAMES_HELP)  # fmt: skip


def _decoder_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--decoder", default="shipped",
                   help="decoder folder, 'shipped' (default) or 'none' (bicubic)")  # fmt: skip
    p.add_argument("--steps", type=integer(0, MAX_STEPS), default=0,
                   help=f"DDIM steps 1-{MAX_STEPS} (default 0: the decoder's)")  # fmt: skip
    add_max_parameters(p)


def require_video() -> None:
    """Without the video extra, `fedlab` names it (one line) before any other check."""
    require(("video",), "`fedlab stream`")


def input_path(name: str) -> Path:
    """``--in`` as a local video file, or a bundled clip's file by name (no download)."""
    from fedlab.clients.video import BUNDLED_CLIPS, bundled_clip_path, check_video_path

    path = user_path(name, "--in")
    with naming("--in"):
        if not path.exists() and name in BUNDLED_CLIPS:
            return bundled_clip_path(name)
        return check_video_path(path)


def load_input(name: str, frames: int, max_frames: int = MAX_FRAMES) -> np.ndarray:
    """A local video file, or a bundled clip by name: at most ``frames`` (0: all, up to
    ``max_frames``, the cap)."""
    from fedlab.clients.video import read_clip

    check_frames(frames, max_frames)
    path = input_path(name)
    with naming("--in"):
        return read_clip(path, max_frames=frames, frame_cap=max_frames)


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


def resolve_decoder(  # noqa: ANN201
    value: str, pairs: Iterable[tuple[int, int]] = (), max_parameters: int = MAX_MODEL_PARAMETERS
):
    """``--decoder``: None for ``none``, else the decoder folder loaded, refusing up front any
    of ``pairs`` it was never trained on."""
    from fedlab.clients.cadm.config import SHIPPED_DECODER
    from fedlab.clients.cadm.model import load_decoder

    if value == "none":
        return None
    folder = SHIPPED_DECODER if value == "shipped" else existing_folder(value, "--decoder")
    with naming("--decoder"):
        restorer = load_decoder(folder, max_parameters=max_parameters)
        for r, b in pairs:
            restorer.label_of(r, b)
    return restorer


def _stem(name: str) -> str:
    """The outputs' name stem: ``--in``'s (``clip.mp4`` or the bundled ``carphone``)."""
    input_path(name)  # a name that is no video is refused first
    stem = Path(name).stem
    if not stem or stem in (".", ".."):
        raise FedlabError(f"--in {shown(name)} has no file name to name the outputs after")
    return stem


def encode_command(args: argparse.Namespace) -> int:
    require_video()
    from fedlab.clients.cadm.codec import CodecSpec, check_encodable, encode
    from fedlab.clients.cadm.side_file import SUFFIX, side_text

    from fedlab.atomic import atomic_write_bytes, atomic_write_text

    with naming("--codec"):  # --r, --b and --crf were bounded when parsed
        spec = CodecSpec(r=args.r, b=args.b, codec=args.codec, crf=args.crf)
    check_frames(args.frames, args.max_frames)
    stem = _stem(args.input)
    out, (stream_path, side_path) = plan_outputs(
        args.out, [f"{stem}.mkv", f"{stem}{SUFFIX}"], overwrite=args.overwrite, check=args.check
    )
    clip = load_input(args.input, args.frames, args.max_frames)
    with naming("--r"):
        frames = crop_for(clip, spec.r)
    with naming("--codec"):
        check_encodable(frames, spec)
    if args.check:
        print(f"ok: stream encode would encode {len(frames)} frames of {args.input} and write "
              f"{stream_path.name}, {side_path.name} to {out}")  # fmt: skip
        return 0
    encoded = encode(frames, spec)
    path = atomic_write_bytes(stream_path, encoded.data)
    atomic_write_text(side_path, side_text(encoded))
    print(f"wrote {path}: {encoded.total_bytes} bytes for {encoded.frames} frames "
          f"({encoded.width}x{encoded.height} sent at r={spec.r}, b={spec.b})")  # fmt: skip
    return 0


def decode_file(path: str | Path, out: str | Path, *, decoder: str = "shipped", steps: int = 0,
                progress: bool = True, overwrite: bool = False, check: bool = False,
                max_frames: int = MAX_FRAMES,
                max_parameters: int = MAX_MODEL_PARAMETERS) -> Path:  # fmt: skip
    """Decode a stream written by ``encode``, restore it, write ``<stem>_restored.mp4``.

    Everything is validated before a frame is decoded: the stream is a local regular file, its
    side file passes :func:`~fedlab.clients.cadm.side_file.read_side_file` and agrees with the
    stream's container, codec and frame size, the output is new (or ``overwrite``) and the
    decoder knows the pair. ``check`` stops there, after decoding the stream's frames.
    """
    from fedlab.clients.cadm.codec import receive, to_uint8
    from fedlab.clients.cadm.side_file import check_stream, read_side_file, side_path
    from fedlab.clients.video import check_video_path, probe_video, write_clip

    path = user_path(str(path), "--in")
    with naming("--in"):
        path = check_video_path(path)
        side_file = side_path(path)
        side = read_side_file(side_file, max_frames=max_frames)
        name = repr(str(path))
        check_stream(side, probe_video(path), name, repr(str(side_file)))
        if path.stat().st_size > MAX_CLIP_BYTES:  # compressed, it is never larger than decoded
            raise FedlabError(f"{name} is over {MAX_CLIP_BYTES / 2**30:.0f} GiB; not a stream")
    _, (result,) = plan_outputs(
        str(out), [f"{path.stem}_restored.mp4"], overwrite=overwrite, check=check
    )
    restorer = resolve_decoder(decoder, [(side.spec.r, side.spec.b)], max_parameters)
    with naming("--in"):
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise FedlabError(f"{name} cannot be read ({exc.strerror})") from None
        up = receive(side.encoded(data), name=name)
    if check:
        return result
    if restorer is not None:
        up = restorer.restore(up, side.spec.r, side.spec.b, steps=steps, progress=progress)
    return write_clip(result, to_uint8(up), crf=10)


def decode_command(args: argparse.Namespace) -> int:
    require_video()
    torch.set_num_threads(1)
    result = decode_file(args.input, args.out, decoder=args.decoder, steps=args.steps,
                         overwrite=args.overwrite, check=args.check,
                         max_frames=args.max_frames,
                         max_parameters=args.max_parameters)  # fmt: skip
    if args.check:
        print(f"ok: stream decode would restore {args.input} and write {result}")
        return 0
    print(f"wrote {result}")
    return 0


def _sweep(parse: Callable, text: str, flag: str) -> list:
    """``--pairs`` / ``--crfs`` / ``--x264-crfs`` parsed, with one-line errors naming the flag.

    Each entry is an encode (and a restoration) per clip, so a sweep holds at most
    :data:`MAX_SWEEP` entries; a resolution factor above ``MAX_FRAME_SIDE / 2`` fits no frame.
    """
    if len(text) > 20 * MAX_SWEEP:
        raise FedlabError(f"{flag} is {len(text)} characters long; name at most {MAX_SWEEP} items")
    try:
        values = parse(text, flag)
    except FedlabError as exc:  # the message quotes the whole value: cut it to its start
        raise FedlabError(str(exc).replace(repr(text), shown(text))) from None
    except ValueError:  # int() of a digit that only Unicode calls one (e.g. "2x\u00b2")
        raise FedlabError(
            f"{flag} {shown(text)} is not a comma-separated list; see --help"
        ) from None
    if len(values) > MAX_SWEEP:
        raise FedlabError(f"{flag} names {len(values)} items; at most {MAX_SWEEP} are swept")
    for value in values:
        if isinstance(value, tuple) and value[0] > MAX_FRAME_SIDE // 2:
            raise FedlabError(
                f"{flag}: resolution factor {value[0]} is over {MAX_FRAME_SIDE // 2} "
                f"(a frame is at most {MAX_FRAME_SIDE} px a side)"
            )
    return values


def eval_command(args: argparse.Namespace) -> int:
    require_video()
    from fedlab.clients.cadm.config import parse_crfs, parse_pairs

    from fedlab.atomic import atomic_write, atomic_write_text

    torch.set_num_threads(1)
    pairs = _sweep(parse_pairs, args.pairs, "--pairs")
    crfs = _sweep(parse_crfs, args.crfs, "--crfs")
    x264_crfs = _sweep(parse_crfs, args.x264_crfs, "--x264-crfs")
    check_frames(args.frames, args.max_frames)
    input_path(args.input)
    out, (rd_json, rd_png) = plan_outputs(
        args.out, ["rd.json", "rd.png"], overwrite=args.overwrite, check=args.check
    )
    restorer = resolve_decoder(args.decoder, pairs, args.max_parameters)
    clip = load_input(args.input, args.frames, args.max_frames)
    with naming("--pairs"):
        frames = crop_for(clip, max(r for r, _ in pairs))
    if args.check:
        print(f"ok: stream eval would sweep {len(pairs)} pairs x {len(crfs)} CRFs on "
              f"{len(frames)} frames of {args.input}; writes rd.json, rd.png to {out}")  # fmt: skip
        return 0
    from fedlab.clients.cadm.evaluate import bd_rates, evaluate_clip, rd_plot

    methods: dict = {"bicubic": (None, 0)}
    if restorer is not None:
        methods["cadm"] = (lambda up, r, b: restorer.restore(up, r, b, steps=args.steps),
                           restorer.model_bytes())  # fmt: skip
    name = Path(args.input).stem
    rows = evaluate_clip(frames, name, pairs=pairs, crfs=crfs, x264_crfs=x264_crfs,
                         methods=methods, with_vmaf=not args.no_vmaf, progress=True)  # fmt: skip
    metric = "psnr" if args.no_vmaf else "vmaf"
    bd = {f"{m} r{r}b{b}": v for (_, m, r, b), v in bd_rates(rows, metric).items()}
    atomic_write_text(rd_json, json.dumps({"rows": rows, f"bd-rate-{metric}": bd}, indent=1))
    atomic_write(rd_png, lambda p: rd_plot(rows, p))
    for key, value in bd.items():
        print(f"{key}: BD-rate ({metric}) vs x264 = "
              f"{'n/a' if value is None else f'{value:+.1f}%'}")  # fmt: skip
    print(f"wrote {rd_json} and {rd_png}")
    return 0
