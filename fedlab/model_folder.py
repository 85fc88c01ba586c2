"""Model folders from others (``save_pretrained`` folders): one validation step before loading.

Every loader of a folder a user gives (a UNet prior, the Arena detector, the CaDM decoder, the
SR CNN, the PGLA and DnCNN denoisers) goes through :func:`load_model`, and every pre-Ray check
of such a folder through :func:`check_model_folder`. The step, in order:

1. the folder exists; its weights are the one safetensors file the class saves
   (``diffusion_pytorch_model.safetensors``): a folder holding only pickles (``.bin``,
   ``.pt``, ``.ckpt``, ...) is refused, since unpickling someone's file runs their code;
2. ``config.json`` is a regular file of at most :data:`MAX_CONFIG_BYTES`, valid UTF-8 JSON,
   an object; each field the class takes is typed and bounded by its :class:`ModelSpec`
   (ints in a sane range, lists of ints where lists are expected, strings from allowlists
   where the value selects a class); other keys are ignored, as diffusers ignores them;
3. the model is built on the meta device from the validated fields (no memory behind any
   tensor) and its parameter count is checked against a cap
   (:data:`fedlab.limits.MAX_MODEL_PARAMETERS` unless the caller raises it);
4. the safetensors header (names, shapes, dtypes; no tensor data) is compared with the meta
   model's state dict, so that a mismatch is one line naming the first bad tensor.

Only then is the model built for real and each tensor copied in from the memory-mapped file.
Every failure is a one-line :class:`~fedlab.errors.FedlabError` naming the folder, the file or
field, what is allowed and how to fix it.

Symbolic links are followed as long as they end at a regular file: a Hugging Face cache
snapshot is a folder of links into ``blobs/``. A link to a device, a pipe or a folder is
refused (reading ``/dev/zero`` as a config would never end).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from fedlab.errors import FedlabError
from fedlab.field_rules import (
    Rule,
    is_int,
)
from fedlab.limits import MAX_INT, MAX_MODEL_PARAMETERS

#: A config.json of a model is a few kilobytes; anything past this is not one.
MAX_CONFIG_BYTES = 1 << 20
#: Channel counts, embedding widths: any real model stays far below (the cap on parameters
#: bounds the product; this keeps each factor's arithmetic small).
MAX_CHANNELS = 1 << 16
#: Image sides (``sample_size``, ``image_size``).
MAX_SIDE = 1 << 15
#: Repeated layers (blocks per level, depth): the meta build's time grows with this count.
MAX_LAYERS = 256
#: Classes of a class embedding.
MAX_CLASSES = 1 << 24
#: Diffusion timesteps of a schedule (the betas are allocated at this length).
MAX_TIMESTEPS = 100_000

WEIGHTS_NAME = "diffusion_pytorch_model.safetensors"
CONFIG_NAME = "config.json"
#: Suffixes of pickled weights; such files are never opened.
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")
#: safetensors dtype names of floating-point tensors.
FLOAT_DTYPES = frozenset({"F16", "BF16", "F32", "F64", "F8_E4M3", "F8_E5M2"})

FIX = "fix the file or give a folder written by save_pretrained"


# -- values in one short line ---------------------------------------------------------------------
def show(value: object, limit: int = 40) -> str:
    """``value`` for an error line: cut, never over one line, never raising (a 4000-digit
    integer or a list of them has a repr of thousands of characters)."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 128:
        return f"an integer of {value.bit_length()} bits"
    try:
        text = repr(value)
    except (ValueError, RecursionError):
        text = f"a {type(value).__name__}"
    if len(text) > limit:
        text = f"{text[:limit]}... ({len(text)} characters)"
    return text


def where(folder: str | Path, source: str = "model") -> str:
    """``"model folder '/x'"``: the start of every error line (repr escapes newlines)."""
    return f"{source} folder {str(folder)!r}"


# -- what a folder holds --------------------------------------------------------------------------
@dataclass(frozen=True)
class ModelSpec:
    """How to validate and build one class of model folder.

    Parameters
    ----------
    name : str
        The class name (``config.json``'s ``_class_name``, when present, must equal it).
    fields : Mapping[str, Rule]
        A rule for every argument of the class's ``__init__`` (missing keys take the class
        default, as diffusers does; keys with no rule are ignored, as diffusers ignores them).
    build : callable
        ``build(**fields)`` -> the model; run once on the meta device, once for real.
    check : callable, optional
        Cross-field checks on the validated fields: returns a problem text or None.
    weights, config : str
        File names inside the folder.
    hint : str
        How to make a valid folder (ends every error line).
    """

    name: str
    fields: Mapping[str, Rule]
    build: Callable[..., torch.nn.Module]
    check: Callable[[dict[str, Any]], str | None] | None = None
    weights: str = WEIGHTS_NAME
    config: str = CONFIG_NAME
    hint: str = FIX


@dataclass
class FolderCheck:
    """What :func:`inspect_folder` found: validated fields, parameter count, the files."""

    folder: Path
    spec: ModelSpec
    fields: dict[str, Any]
    parameters: int
    weights: Path
    shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)


# -- files ----------------------------------------------------------------------------------------
def regular_file(path: Path, label: str) -> Path:
    """``path`` if it is (or links to) a regular file; a one-line error for a device, pipe or
    folder, which reading would hang on or fail with a traceback."""
    try:
        if path.is_file():
            return path
        exists = path.exists() or path.is_symlink()
    except OSError as exc:  # a link loop, a name too long
        raise FedlabError(f"{label}: {path.name} cannot be read ({exc.strerror}); {FIX}") from None
    if exists:
        raise FedlabError(
            f"{label}: {path.name} is not a regular file (a device, pipe, folder or broken "
            f"link); {FIX}"
        )
    raise FedlabError(f"{label}: {path.name} is missing; {FIX}")


def read_json_object(path: Path, label: str, *, hint: str = FIX) -> dict[str, Any]:
    """A small JSON object from ``path``: size, encoding, syntax and type checked, one line
    each (a 5000-digit integer is a syntax error to Python's json: ValueError past 4300 digits;
    deep nesting a RecursionError)."""
    path = regular_file(path, label)
    try:
        size = path.stat().st_size
        if size > MAX_CONFIG_BYTES:
            raise FedlabError(
                f"{label}: {path.name} is {size:,} bytes, over the {MAX_CONFIG_BYTES:,} a model "
                f"config may take; {hint}"
            )
        with open(path, "rb") as handle:  # read no more than the cap even if it grows
            data = handle.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise FedlabError(f"{label}: {path.name} cannot be read ({exc.strerror}); {hint}") from None
    if len(data) > MAX_CONFIG_BYTES:
        raise FedlabError(f"{label}: {path.name} is over {MAX_CONFIG_BYTES:,} bytes; {hint}")
    try:
        value = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise FedlabError(f"{label}: {path.name} is not UTF-8 text; {hint}") from None
    except RecursionError:
        raise FedlabError(f"{label}: {path.name} nests too deeply to be a config; {hint}") from None
    except ValueError as exc:  # JSONDecodeError, and integers past 4300 digits
        text = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
        if "integer string conversion" in text:
            text = "an integer of more than 4300 digits"
        raise FedlabError(f"{label}: {path.name} is not valid JSON ({text}); {hint}") from None
    if not isinstance(value, dict):
        raise FedlabError(
            f"{label}: {path.name} must hold a JSON object, got a {type(value).__name__}; {hint}"
        )
    return value


def validate_record(
    raw: Mapping[str, Any],
    rules: Mapping[str, Rule],
    label: str,
    file: str,
    hint: str = FIX,
    *,
    extra_keys: bool = True,
) -> dict[str, Any]:
    """The fields of ``raw`` that ``rules`` name, each checked (absent ones left out, for the
    class default); other keys are ignored when ``extra_keys``, else refused."""
    if not extra_keys:
        unknown = sorted(str(k) for k in raw if k not in rules)
        if unknown:
            raise FedlabError(
                f"{label}: {file} has unknown field {show(unknown[0])}; allowed: "
                f"{', '.join(rules)}; {hint}"
            )
    fields: dict[str, Any] = {}
    for name, rule in rules.items():
        if name not in raw:
            continue
        try:
            fields[name] = rule.check(raw[name])
        except ValueError as exc:
            raise FedlabError(
                f"{label}: {file} field {name} must be {exc}, got {show(raw[name])}; {hint}"
            ) from None
    return fields


def validate_fields(
    raw: Mapping[str, Any], spec: ModelSpec, label: str, file: str | None = None
) -> dict[str, Any]:
    """The fields of ``raw`` that ``spec`` knows, each checked by its rule, then the spec's
    cross-field check; keys it does not know are ignored, as diffusers ignores them."""
    file = file or spec.config
    saved = raw.get("_class_name", spec.name)
    if saved != spec.name:
        named = saved if isinstance(saved, str) and saved.isidentifier() else show(saved)
        raise FedlabError(
            f"{label}: {file} describes a {named}, not a {spec.name}; give a {spec.name} folder"
        )
    fields = validate_record(raw, spec.fields, label, file, spec.hint)
    problem = spec.check(fields) if spec.check else None
    if problem:
        raise FedlabError(f"{label}: {file} {problem}; {spec.hint}")
    return fields


def pickle_files(folder: Path) -> list[str]:
    """Names of pickled weight files in ``folder`` (never opened)."""
    try:
        return sorted(p.name for p in folder.iterdir() if p.suffix in PICKLE_SUFFIXES)
    except OSError:
        return []


def weights_file(folder: Path, spec: ModelSpec, label: str) -> Path:
    """The safetensors file of ``folder``; a one-line error naming pickles if only those are
    there."""
    path = folder / spec.weights
    if not (path.exists() or path.is_symlink()):
        pickles = pickle_files(folder)
        if pickles:
            raise FedlabError(
                f"{label} holds only pickled weights ({', '.join(pickles[:3])}); fedlab loads "
                f"safetensors only and never unpickles a file: save it again with "
                f"save_pretrained(..., safe_serialization=True) to get {spec.weights}"
            )
        raise FedlabError(
            f"{label} has no {spec.weights}; give a {spec.name} folder ({spec.config} + "
            f"{spec.weights}) written by save_pretrained"
        )
    return regular_file(path, label)


# -- the meta model -------------------------------------------------------------------------------
def build_meta(spec: ModelSpec, fields: Mapping[str, Any], label: str) -> torch.nn.Module:
    """``spec.build(**fields)`` on the meta device: shapes only, no memory behind a tensor."""
    try:
        with torch.device("meta"):
            return spec.build(**fields)
    except Exception as exc:  # noqa: BLE001 - any refusal of the class is a bad config
        text = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        raise FedlabError(
            f"{label}: {spec.config} describes no buildable {spec.name} ({text}); {spec.hint}"
        ) from None


def count_parameters(model: torch.nn.Module) -> int:
    """Elements of the state dict (parameters and persistent buffers); works on meta."""
    return sum(t.numel() for t in model.state_dict().values())


def check_parameters(
    count: int, cap: int | None, label: str, spec: ModelSpec, file: str | None = None
) -> int:
    cap = MAX_MODEL_PARAMETERS if cap is None else cap
    if count > cap:
        raise FedlabError(
            f"{label}: the {spec.name} its {file or spec.config} describes has {count:,} "
            f"parameters, over the cap of {cap:,}; pass --max-parameters (max_parameters= in "
            "Python) to allow more, or give a smaller model"
        )
    return count


def check_cap_argument(max_parameters: int | None) -> int:
    """The cap to use: :data:`MAX_MODEL_PARAMETERS` for None, else a positive integer."""
    if max_parameters is None:
        return MAX_MODEL_PARAMETERS
    if not is_int(max_parameters) or not 1 <= max_parameters <= MAX_INT:
        raise FedlabError(
            f"max-parameters must be an integer in [1, {MAX_INT}], got {show(max_parameters)}"
        )
    return max_parameters


def header_shapes(path: Path, label: str) -> dict[str, tuple[tuple[int, ...], str]]:
    """``name -> (shape, dtype)`` from the safetensors header only (no tensor data read)."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            return {
                name: (tuple(handle.get_slice(name).get_shape()),
                       str(handle.get_slice(name).get_dtype()))
                for name in handle.keys()  # noqa: SIM118 - safe_open has no __iter__
            }  # fmt: skip
    except Exception as exc:  # noqa: BLE001 - SafetensorError, OSError, bad headers
        text = str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__
        raise FedlabError(
            f"{label}: {path.name} is not a readable safetensors file ({text}); save the model "
            "again with save_pretrained(..., safe_serialization=True)"
        ) from None


def check_tensors(
    header: Mapping[str, tuple[tuple[int, ...], str]],
    model: torch.nn.Module,
    label: str,
    file: str,
    spec: ModelSpec,
) -> None:
    """The file's tensors are exactly the model's state dict (names, shapes, float dtypes);
    one line naming the first that differs."""
    expected = model.state_dict()
    for name, tensor in expected.items():
        if name not in header:
            raise FedlabError(
                f"{label}: {file} lacks tensor {show(name, 80)} of the {spec.name}; the weights "
                "and the config are from different models"
            )
        shape, dtype = header[name]
        if shape != tuple(tensor.shape):
            raise FedlabError(
                f"{label}: {file} tensor {show(name, 80)} has shape {list(shape)}, but the "
                f"{spec.name} needs {list(tensor.shape)}; the weights and the config are from "
                "different models"
            )
        if tensor.is_floating_point() and dtype not in FLOAT_DTYPES:
            raise FedlabError(
                f"{label}: {file} tensor {show(name, 80)} is {dtype}, not a floating-point "
                "type; save the model again with save_pretrained"
            )
    extra = sorted(set(header) - set(expected))
    if extra:
        raise FedlabError(
            f"{label}: {file} holds tensor {show(extra[0], 80)} that the {spec.name} does not "
            f"have ({len(extra)} such); the weights and the config are from different models"
        )


# -- the entry points -----------------------------------------------------------------------------
def inspect_folder(
    folder: str | Path,
    spec: ModelSpec,
    *,
    max_parameters: int | None = None,
    require: Mapping[str, Sequence[Any]] | None = None,
    source: str = "model",
) -> FolderCheck:
    """Every check of a model folder, allocating nothing: config read and validated, the
    model built on the meta device and counted, the weights' header compared with it.

    Parameters
    ----------
    folder : str or Path
    spec : ModelSpec
    max_parameters : int, optional
        The cap (default :data:`fedlab.limits.MAX_MODEL_PARAMETERS`).
    require : mapping, optional
        Config values this caller needs (``{"in_channels": (3,)}``), checked on the built
        config (defaults included).
    source : str
        How errors name the folder (``"init-from"`` -> ``init-from folder '...'``).

    Raises
    ------
    FedlabError
        One line for the first problem found.
    """
    cap = check_cap_argument(max_parameters)
    folder = Path(folder)
    label = where(folder, source)
    if not folder.is_dir():
        raise FedlabError(
            f"{label} does not exist or is not a folder; give a local {spec.name} folder "
            f"({spec.config} + {spec.weights}) written by save_pretrained"
        )
    weights = weights_file(folder, spec, label)
    fields = read_and_validate(folder, spec, label)
    count, shapes = check_weights(weights, spec, fields, label, max_parameters=cap,
                                  require=require)  # fmt: skip
    return FolderCheck(folder, spec, fields, count, weights, shapes)


def check_weights(
    weights: Path,
    spec: ModelSpec,
    fields: Mapping[str, Any],
    label: str,
    *,
    max_parameters: int | None = None,
    require: Mapping[str, Sequence[Any]] | None = None,
) -> tuple[int, dict[str, tuple[int, ...]]]:
    """The model ``spec`` builds from ``fields``, on the meta device: its parameter count
    against the cap, then the safetensors header of ``weights`` against its state dict.

    For weights whose model comes from elsewhere than the folder's config.json (a run folder's
    ``model.safetensors`` loaded into the run config's model). Returns the parameter count and
    the header's shapes.
    """
    cap = check_cap_argument(max_parameters)
    meta = build_meta(spec, fields, label)
    check_required(meta, fields, require, label, spec)
    count = check_parameters(count_parameters(meta), cap, label, spec)
    header = header_shapes(weights, label)
    check_tensors(header, meta, label, weights.name, spec)
    return count, {name: shape for name, (shape, _) in header.items()}


def read_and_validate(folder: Path, spec: ModelSpec, label: str) -> dict[str, Any]:
    """``folder/spec.config`` read and validated (see :func:`validate_fields`)."""
    raw = read_json_object(folder / spec.config, label, hint=spec.hint)
    return validate_fields(raw, spec, label)


def check_required(
    meta: torch.nn.Module,
    fields: Mapping[str, Any],
    require: Mapping[str, Sequence[Any]] | None,
    label: str,
    spec: ModelSpec,
) -> None:
    # The built model's config holds the class defaults too (a key config.json left out).
    config = dict(getattr(meta, "config", None) or fields)
    for name, allowed in (require or {}).items():
        value = config.get(name)
        if value not in allowed:
            allowed_text = " or ".join(show(a) for a in allowed)
            raise FedlabError(
                f"{label}: {spec.config} field {name} is {show(value)}, but this use needs "
                f"{allowed_text}; give a matching {spec.name} folder"
            )


def load_model(
    folder: str | Path,
    spec: ModelSpec,
    *,
    max_parameters: int | None = None,
    require: Mapping[str, Sequence[Any]] | None = None,
    source: str = "model",
) -> torch.nn.Module:
    """The model of a checked folder (:func:`inspect_folder`), in eval mode.

    Built for real only after every check passed, then filled tensor by tensor from the
    memory-mapped safetensors file (so memory holds the model plus one tensor at a time).
    """
    found = inspect_folder(
        folder, spec, max_parameters=max_parameters, require=require, source=source
    )
    label = where(found.folder, source)
    from safetensors import safe_open

    try:
        model = spec.build(**found.fields)
    except Exception as exc:  # noqa: BLE001 - it built on meta, so this is the machine
        text = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        raise FedlabError(f"{label}: building the {spec.name} failed ({text})") from None
    state = model.state_dict()
    try:
        with torch.no_grad(), safe_open(str(found.weights), framework="pt") as handle:
            for name, target in state.items():
                target.copy_(handle.get_tensor(name))
    except Exception as exc:  # noqa: BLE001 - a file cut or changed after its header was read
        text = str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__
        raise FedlabError(
            f"{label}: {spec.weights} cannot be read ({text}); save the model again with "
            "save_pretrained(..., safe_serialization=True)"
        ) from None
    if hasattr(model, "register_to_config"):  # as from_pretrained records it
        model.register_to_config(_name_or_path=str(found.folder))
    return model.eval()


#: Kinds :func:`check_model_folder` knows by name; plugins add theirs with :func:`register_kind`.
_KINDS: dict[str, ModelSpec | Callable[[], ModelSpec]] = {}


def register_kind(name: str, spec: ModelSpec | Callable[[], ModelSpec]) -> None:
    """Let :func:`check_model_folder` take ``name`` for ``spec`` (or a function returning it)."""
    _KINDS[name] = spec


def _unet_spec() -> ModelSpec:
    from fedlab.diffusion.models import UNET_SPEC

    return UNET_SPEC


register_kind("unet", _unet_spec)


def resolve_kind(kind: str | ModelSpec) -> ModelSpec:
    if isinstance(kind, ModelSpec):
        return kind
    if kind not in _KINDS:
        raise FedlabError(f"unknown model-folder kind {kind!r}; known: {', '.join(sorted(_KINDS))}")
    spec = _KINDS[kind]
    return spec if isinstance(spec, ModelSpec) else spec()


def check_model_folder(
    path: str | Path,
    kind: str | ModelSpec,
    *,
    max_parameters: int | None = None,
    require: Mapping[str, Sequence[Any]] | None = None,
    source: str = "model",
) -> int:
    """The pre-Ray check of a model folder: everything :func:`load_model` checks, nothing
    allocated. Returns the parameter count.

    ``kind`` is a :class:`ModelSpec` or a registered name (``"unet"``: a ``UNet2DModel``
    folder or a pipeline folder holding it as ``unet/``).
    """
    spec = resolve_kind(kind)
    folder = Path(path)
    if kind == "unet":
        from fedlab.diffusion.models import unet_folder

        folder = unet_folder(folder)
    found = inspect_folder(
        folder, spec, max_parameters=max_parameters, require=require, source=source
    )
    return found.parameters
