"""Model folders from others go through one validation step (:mod:`fedlab.model_folder`).

- regressions, one per finding of issue 30: ``block_out_channels: "abc"`` was a TypeError; a
  config asking for huge channel counts allocated 17 GB before any check; an ``init-from``
  folder holding only pickles, or a broken config.json, passed the pre-Ray check;
- property tests: generated config.json contents (numbers of any size, NaN/Inf, wrong types,
  huge channel counts, missing and extra keys, non-objects, truncated files, 5000-digit
  integers) and folder layouts (links out of the folder, to a device, a ``.bin``-only folder)
  for every loader: each call returns a model within the cap or raises a one-line
  FedlabError naming the folder, and no tensor beyond the cap is ever allocated;
- two subprocesses under a 3 GiB address-space limit: a config asking for ~18 G parameters is
  refused in one line, quickly, by the loader and by the pre-Ray check.
"""

from __future__ import annotations

import inspect
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch.overrides import TorchFunctionMode

from fedlab.diffusion.models import UNET_SPEC, build_unet, load_unet
from fedlab.errors import FedlabError
from fedlab.limits import MAX_MODEL_PARAMETERS
from fedlab.model_folder import (
    WEIGHTS_NAME,
    ModelSpec,
    check_model_folder,
    count_parameters,
    load_model,
)

ROOT = Path(__file__).resolve().parents[2]
#: The cap the property tests load under: every generated folder that loads stays below it.
CAP = 50_000


# -- allocation guard -----------------------------------------------------------------------------
class OverBudget(BaseException):
    """Raised by :class:`AllocationGuard` (a BaseException, so no loader's ``except Exception``
    can turn it into a FedlabError)."""


FACTORIES = {"empty", "zeros", "ones", "rand", "randn", "full", "empty_strided", "randint"}


class AllocationGuard(TorchFunctionMode):
    """Counts the elements of every tensor a torch factory creates off the meta device, and
    stops the call *before* the allocation once the total passes ``budget``."""

    def __init__(self, budget: int) -> None:
        super().__init__()
        self.budget, self.total = budget, 0

    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        if name in FACTORIES and str(kwargs.get("device", "cpu")) != "meta":
            size = args[0] if args and isinstance(args[0], list | tuple | torch.Size) else args
            if name in ("full", "randint"):
                size = next((a for a in args if isinstance(a, list | tuple | torch.Size)), ())
            dims = [int(d) for d in size if isinstance(d, int)]
            self.total += math.prod(dims) if dims else 1
            if self.total > self.budget:
                raise OverBudget(f"{self.total:,} elements allocated, over {self.budget:,}")
        return func(*args, **kwargs)


# -- the folder kinds -----------------------------------------------------------------------------
@dataclass
class Kind:
    """One loader of a model folder and a tiny valid folder of its class."""

    name: str
    build: Callable[[], torch.nn.Module]
    load: Callable[[Path, int], Any]

    def folder(self, root: Path) -> tuple[Path, dict[str, Any]]:
        folder = root / self.name
        if not folder.is_dir():
            self.build().save_pretrained(folder, safe_serialization=True)
        return folder, json.loads((folder / "config.json").read_text())


def _arena() -> Kind:
    from fedlab.clients.arena.model import ArenaViT, load_detector

    return Kind(
        "ArenaViT",
        lambda: ArenaViT(image_size=16, patch_size=8, dim=8, depth=1, heads=2, head_hidden=8),
        lambda f, cap: load_detector(f, max_parameters=cap),
    )


def _cnn() -> Kind:
    from fedlab.clients.sr.cnn import ArbitraryScaleCNN, load_cnn

    return Kind("ArbitraryScaleCNN", lambda: ArbitraryScaleCNN(width=4, depth=2),
                lambda f, cap: load_cnn(f, max_parameters=cap))  # fmt: skip


def _small_sr() -> Kind:
    from fedlab.clients.cadm.model import SmallSR, load_small_sr

    return Kind("SmallSR", lambda: SmallSR(width=4, blocks=1),
                lambda f, cap: load_small_sr(f, max_parameters=cap))  # fmt: skip


def _dncnn() -> Kind:
    from fedlab.attacks.pgla.dncnn import DNCNN_SPEC, DnCNN

    return Kind("DnCNN", lambda: DnCNN(depth=2, channels=4),
                lambda f, cap: load_model(f, DNCNN_SPEC, max_parameters=cap))  # fmt: skip


def _unet() -> Kind:
    def load(folder: Path, cap: int) -> Any:
        # Half the examples go through the pre-Ray entry point: the same checks, no model.
        if folder.name.endswith("-check"):
            return check_model_folder(folder, "unet", max_parameters=cap)
        return load_unet(folder, max_parameters=cap)

    return Kind("UNet2DModel", lambda: build_unet("tiny"), load)


KINDS = {k.name: k for k in (_unet(), _arena(), _cnn(), _small_sr(), _dncnn())}


def _specs() -> dict[str, ModelSpec]:
    from fedlab.attacks.pgla.dncnn import DNCNN_SPEC
    from fedlab.clients.arena.model import DETECTOR_SPEC
    from fedlab.clients.cadm.model import SMALL_SR_SPEC
    from fedlab.clients.sr.cnn import CNN_SPEC

    return {s.name: s for s in (UNET_SPEC, DETECTOR_SPEC, CNN_SPEC, SMALL_SR_SPEC, DNCNN_SPEC)}


@pytest.fixture(scope="module")
def bases(tmp_path_factory) -> dict[str, tuple[Path, dict[str, Any]]]:
    root = tmp_path_factory.mktemp("bases")
    return {name: kind.folder(root) for name, kind in KINDS.items()}


def _folder(tmp_path: Path, config: dict[str, Any] | str, weights: Path | None) -> Path:
    folder = tmp_path / "model"
    folder.mkdir()
    text = config if isinstance(config, str) else json.dumps(config)
    (folder / "config.json").write_text(text)
    if weights is not None:
        (folder / WEIGHTS_NAME).write_bytes(weights.read_bytes())
    return folder


def _one_line(exc: pytest.ExceptionInfo, *needles: str) -> str:
    message = str(exc.value)
    assert "\n" not in message, message
    for needle in needles:
        assert needle in message, message
    return message


# -- the findings ---------------------------------------------------------------------------------
def test_a_string_for_block_out_channels_is_one_line_naming_the_field(tmp_path):
    """Finding: ``block_out_channels: "abc"`` in a three-level UNet's config.json (the shipped
    prior's) was a TypeError traceback from deep inside diffusers (a string of the right
    length passed its length check, then ``nn.Conv2d(3, "a")`` failed)."""
    from fedlab.clients.sr.config import SHIPPED_PRIOR

    config = json.loads((SHIPPED_PRIOR / "config.json").read_text())
    assert len(config["down_block_types"]) == 3
    folder = _folder(tmp_path, {**config, "block_out_channels": "abc"},
                     SHIPPED_PRIOR / WEIGHTS_NAME)  # fmt: skip
    with pytest.raises(FedlabError) as exc:
        load_unet(folder)
    _one_line(exc, str(folder), "block_out_channels", "list of 1-8 integers", "'abc'")


def test_huge_channel_counts_are_refused_before_anything_is_allocated(tmp_path, bases):
    """Finding: a config.json asking for huge channel counts allocated 17 GB before any check.
    Now the count is taken on the meta device: the guard would stop any real allocation past
    a few thousand elements, and the refusal names the count, the cap and the flag."""
    base, config = bases["UNet2DModel"]
    huge = {**config, "block_out_channels": [8192, 8192], "norm_num_groups": 32}
    folder = _folder(tmp_path, huge, base / WEIGHTS_NAME)
    start = time.perf_counter()
    with AllocationGuard(budget=10_000), pytest.raises(FedlabError) as exc:
        load_unet(folder)
    assert time.perf_counter() - start < 10
    message = _one_line(exc, str(folder), "parameters, over the cap of", "--max-parameters")
    assert f"{MAX_MODEL_PARAMETERS:,}" in message


def _prior_config(folder: Path) -> Any:
    from fedlab.clients.sr.config import DiffSRConfig

    return DiffSRConfig.from_mapping({"init-from": str(folder), "methods": "bicubic"})


def test_an_init_from_folder_holding_only_pickles_fails_the_pre_ray_check(tmp_path, bases):
    """Finding: an ``init-from`` folder holding only pickled weights passed the pre-Ray check
    (only "is a folder" was tested) and failed inside Ray."""
    from fedlab.clients.diffusion_prior import check_prior_app

    _, config = bases["UNet2DModel"]
    folder = _folder(tmp_path, config, None)
    torch.save({"x": torch.zeros(1)}, folder / "diffusion_pytorch_model.bin")
    with pytest.raises(FedlabError) as exc:
        check_prior_app(_prior_config(folder), 2)
    _one_line(exc, "init-from folder", str(folder), "pickled", "diffusion_pytorch_model.bin",
              "safetensors")  # fmt: skip


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ('{"block_out_channels": [4, 8', "not valid JSON"),
        ("[1, 2]", "must hold a JSON object"),
        ('{"norm_num_groups": "two"}', "field norm_num_groups"),
        ('{"layers_per_block": ' + "7" * 5000 + "}", "more than 4300 digits"),
    ],
    ids=["truncated", "not-an-object", "wrong-type", "5000-digits"],
)
def test_an_init_from_folder_with_a_broken_config_fails_the_pre_ray_check(
    tmp_path, bases, text, needle
):
    """Finding: an ``init-from`` folder with a broken config.json passed the pre-Ray check."""
    from fedlab.clients.diffusion_prior import check_prior_app

    base, _ = bases["UNet2DModel"]
    folder = _folder(tmp_path, text, base / WEIGHTS_NAME)
    with pytest.raises(FedlabError) as exc:
        check_prior_app(_prior_config(folder), 2)
    _one_line(exc, "init-from folder", str(folder), needle)


def test_the_pre_ray_check_passes_a_good_prior_and_refuses_a_non_rgb_one(tmp_path):
    from fedlab.clients.diffusion_prior import check_prior_app

    build_unet("tiny").save_pretrained(tmp_path / "rgb")
    check_prior_app(_prior_config(tmp_path / "rgb"), 2)
    build_unet("tiny", channels=1).save_pretrained(tmp_path / "grey")
    with pytest.raises(FedlabError) as exc:
        check_prior_app(_prior_config(tmp_path / "grey"), 2)
    _one_line(exc, "field in_channels is 1", "needs 3")


# -- the step's parts -----------------------------------------------------------------------------
def test_every_spec_has_a_rule_for_every_init_argument():
    """A class argument without a rule would be built from the default while config.json says
    otherwise; each spec names them all."""
    for name, spec in _specs().items():
        cls = spec.build
        params = set(inspect.signature(cls.__init__).parameters) - {"self"}
        assert params == set(spec.fields), name


def test_shipped_folders_load_as_from_pretrained_does():
    from diffusers import UNet2DModel
    from fedlab.clients.sr.config import SHIPPED_PRIOR

    ours = load_unet(SHIPPED_PRIOR)
    theirs = UNet2DModel.from_pretrained(
        SHIPPED_PRIOR, use_safetensors=True, local_files_only=True, low_cpu_mem_usage=False
    )
    for (k, a), b in zip(ours.state_dict().items(), theirs.state_dict().values(), strict=True):
        assert torch.equal(a, b), k
    assert not ours.training
    assert {k: v for k, v in ours.config.items() if not k.startswith("_")} == {
        k: v for k, v in theirs.config.items() if not k.startswith("_")
    }


def test_a_folder_under_the_cap_loads_and_max_parameters_raises_the_cap(tmp_path, bases):
    base, _ = bases["UNet2DModel"]
    count = check_model_folder(base, "unet")
    assert count == count_parameters(build_unet("tiny"))
    with pytest.raises(FedlabError) as exc:
        load_unet(base, max_parameters=count - 1)
    _one_line(exc, f"has {count:,} parameters", f"cap of {count - 1:,}")
    assert count_parameters(load_unet(base, max_parameters=count)) == count
    with pytest.raises(FedlabError, match="max-parameters must be an integer"):
        load_unet(base, max_parameters=0)


def test_weights_that_do_not_fit_the_config_name_the_first_bad_tensor(tmp_path, bases):
    base, config = bases["UNet2DModel"]
    folder = _folder(tmp_path, {**config, "block_out_channels": [4, 16]}, base / WEIGHTS_NAME)
    with pytest.raises(FedlabError) as exc:
        load_unet(folder)
    _one_line(exc, str(folder), "tensor", "has shape", "needs", "different models")


def test_a_pipeline_folder_holding_unet_is_accepted(tmp_path, bases):
    base, _ = bases["UNet2DModel"]
    (tmp_path / "pipe").mkdir()
    os.symlink(base, tmp_path / "pipe" / "unet")
    assert check_model_folder(tmp_path / "pipe", "unet") > 0
    assert load_unet(tmp_path / "pipe") is not None


@pytest.mark.parametrize(
    ("layout", "needle"),
    [
        ("config-to-dev-zero", "is not a regular file"),
        ("config-is-a-folder", "is not a regular file"),
        ("config-dangling", "is not a regular file"),
        ("weights-to-dev-zero", "is not a regular file"),
        ("weights-missing", "has no diffusion_pytorch_model.safetensors"),
        ("bin-only", "only pickled weights"),
        ("ckpt-only", "only pickled weights"),
        ("other-class", "describes a UNet2DConditionModel, not a UNet2DModel"),
        ("config-too-big", "over the 1,048,576 a model config may take"),
        ("not-utf8", "is not UTF-8 text"),
        ("deep-nesting", "nests too deeply"),
    ],
)
def test_hostile_layouts_are_one_line(tmp_path, bases, layout, needle):
    base, config = bases["UNet2DModel"]
    folder = _folder(tmp_path, config, base / WEIGHTS_NAME)
    cfg, weights = folder / "config.json", folder / WEIGHTS_NAME
    if layout.startswith("config-"):
        cfg.unlink()
    if layout == "config-to-dev-zero":
        os.symlink("/dev/zero", cfg)
    elif layout == "config-is-a-folder":
        cfg.mkdir()
    elif layout == "config-dangling":
        os.symlink(tmp_path / "nowhere.json", cfg)
    elif layout == "weights-to-dev-zero":
        weights.unlink()
        os.symlink("/dev/zero", weights)
    elif layout == "weights-missing":
        weights.unlink()
    elif layout in ("bin-only", "ckpt-only"):
        weights.unlink()
        (folder / f"model.{layout[:-5]}").write_bytes(b"\x80\x04 not opened")
    elif layout == "other-class":
        cfg.write_text(json.dumps({**config, "_class_name": "UNet2DConditionModel"}))
    elif layout == "config-too-big":
        cfg.write_text(json.dumps({**config, "pad": "x" * (1 << 20)}))
    elif layout == "not-utf8":
        cfg.write_bytes(b'{"in_channels": "\xff\xfe"}')
    elif layout == "deep-nesting":
        cfg.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(FedlabError) as exc:
        load_unet(folder)
    _one_line(exc, str(folder), needle)


def test_a_config_linked_from_outside_the_folder_is_read(tmp_path, bases):
    """A Hugging Face cache snapshot is a folder of links into ``blobs/``: a link to a regular
    file elsewhere is followed."""
    base, config = bases["UNet2DModel"]
    (tmp_path / "blobs").mkdir()
    (tmp_path / "blobs" / "cfg").write_text(json.dumps(config))
    (tmp_path / "snap").mkdir()
    os.symlink(tmp_path / "blobs" / "cfg", tmp_path / "snap" / "config.json")
    os.symlink(base / WEIGHTS_NAME, tmp_path / "snap" / WEIGHTS_NAME)
    assert load_unet(tmp_path / "snap") is not None


# -- property tests -------------------------------------------------------------------------------
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(2**80), max_value=2**80),
    st.integers(min_value=2**15, max_value=10**60),  # channel counts far past the cap
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0, -1, 1, 2, 3, 4, 8, 16, 1.5, "DownBlock2D", "UpBlock2D", "silu"]),
    st.text(max_size=12),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),  # fmt: skip
    max_leaves=8,
)
LAYOUTS = ("plain", "plain", "plain", "config-link-out", "weights-link-out", "bin-only",
           "weights-dev-zero", "no-weights")  # fmt: skip


@st.composite
def config_texts(draw: st.DrawFn, base: dict[str, Any]) -> str | bytes:
    """config.json contents near ``base``: fields replaced, dropped or added, huge ints,
    non-objects, truncated text, 5000-digit integers, raw bytes."""
    fields = sorted(k for k in base if not k.startswith("_"))
    kind = draw(st.sampled_from(["fields"] * 4 + ["huge", "top", "truncated", "digits", "bytes"]))
    if kind == "fields":
        config = dict(base)
        for key in draw(st.lists(st.sampled_from(fields), max_size=3, unique=True)):
            if draw(st.booleans()):
                config[key] = draw(VALUES)
            else:
                del config[key]
        config.update(draw(st.dictionaries(st.text(max_size=8), VALUES, max_size=2)))
        return json.dumps(config)
    if kind == "huge":
        ints = [k for k in fields if isinstance(base[k], int) and not isinstance(base[k], bool)]
        lists = [k for k in fields if isinstance(base[k], list) and base[k]
                 and isinstance(base[k][0], int)]  # fmt: skip
        key = draw(st.sampled_from(ints + lists))
        big = st.integers(min_value=2**8, max_value=2**16)
        value = draw(st.lists(big, min_size=len(base[key]), max_size=len(base[key])) if
                     key in lists else big)  # fmt: skip
        return json.dumps({**base, key: value})
    if kind == "top":
        return json.dumps(draw(VALUES.filter(lambda v: not isinstance(v, dict))))
    text = json.dumps(base)
    if kind == "truncated":
        return text[: draw(st.integers(0, len(text) - 1))]
    if kind == "digits":
        key = draw(st.sampled_from(fields))
        return json.dumps({**base, key: 0}).replace(
            f'"{key}": 0', f'"{key}": ' + "9" * draw(st.integers(4000, 6000))
        )
    return draw(st.binary(max_size=64))


@st.composite
def cases(draw: st.DrawFn, kinds: tuple[str, ...]) -> tuple[str, str | bytes, str]:
    name = draw(st.sampled_from(kinds))
    return name, draw(config_texts(_BASE_CONFIGS[name])), draw(st.sampled_from(LAYOUTS))


#: The saved config of each kind's tiny model (filled by the module fixture before any draw).
_BASE_CONFIGS: dict[str, dict[str, Any]] = {}


@pytest.fixture(scope="module", autouse=True)
def _base_configs(bases) -> Iterator[None]:
    _BASE_CONFIGS.update({name: config for name, (_, config) in bases.items()})
    yield


def check_one_folder(bases, case: tuple[str, str | bytes, str]) -> None:
    """Build the folder ``case`` describes, load it under the guard, and check the outcome."""
    name, text, layout = case
    base, _ = bases[name]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        folder = root / (f"{name}-check" if len(text) % 2 else name)
        folder.mkdir()
        config = folder / "config.json"
        target = root / "outside.json" if layout == "config-link-out" else config
        target.write_bytes(text if isinstance(text, bytes) else text.encode())
        if layout == "config-link-out":
            os.symlink(target, config)
        weights = folder / WEIGHTS_NAME
        if layout == "weights-link-out":
            os.symlink(base / WEIGHTS_NAME, weights)
        elif layout == "weights-dev-zero":
            os.symlink("/dev/zero", weights)
        elif layout == "bin-only":
            (folder / "diffusion_pytorch_model.bin").write_bytes(b"\x80\x04 never unpickled")
        elif layout != "no-weights":
            weights.write_bytes((base / WEIGHTS_NAME).read_bytes())
        guard = AllocationGuard(budget=2 * CAP + 1_000)
        try:
            with guard:
                result = KINDS[name].load(folder, CAP)
        except FedlabError as exc:
            message = str(exc)
            assert "\n" not in message, message
            assert str(folder) in message, message
            return
        count = result if isinstance(result, int) else count_parameters(result)
        assert count <= CAP
        assert layout in ("plain", "config-link-out", "weights-link-out"), layout


ALL_KINDS = tuple(KINDS)
HEALTH = [HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
FAST = settings(max_examples=60, deadline=None, suppress_health_check=HEALTH)
MANY = settings(max_examples=1500, deadline=None, suppress_health_check=HEALTH)


@FAST
@given(case=cases(ALL_KINDS))
def test_any_model_folder_loads_within_the_cap_or_is_refused_in_one_line(bases, case):
    check_one_folder(bases, case)


@FAST
@given(case=cases(("UNet2DModel",)))
def test_any_unet_folder_loads_within_the_cap_or_is_refused_in_one_line(bases, case):
    check_one_folder(bases, case)


@pytest.mark.slow
@MANY
@given(case=cases(ALL_KINDS))
def test_any_model_folder_many(bases, case):
    check_one_folder(bases, case)


def test_the_guard_stops_an_allocation_past_its_budget():
    """The guard the property tests rely on does catch the allocations of a real build."""
    with pytest.raises(OverBudget), AllocationGuard(budget=1_000):
        build_unet("tiny")
    with AllocationGuard(budget=10), torch.device("meta"):
        build_unet("cpu")  # meta tensors are free


# -- under a memory limit -------------------------------------------------------------------------
MEMORY_LIMIT = 3 * 2**30


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


REFUSE = """
import sys
from fedlab.errors import FedlabError
try:
    {call}
except FedlabError as exc:
    sys.stderr.write(f"error: {{exc}}\\n")
    sys.exit(2)
"""


@pytest.mark.parametrize(
    "call",
    [
        pytest.param(
            "from fedlab.diffusion import load_unet; load_unet(sys.argv[1])",
            marks=pytest.mark.slow,  # a subprocess importing torch: 9 s of the fast tier
        ),
        pytest.param(
            "from fedlab.clients.sr.config import DiffSRConfig\n"
            "    from fedlab.clients.diffusion_prior import check_prior_app\n"
            "    check_prior_app(DiffSRConfig.from_mapping({'init-from': sys.argv[1], "
            "'methods': 'bicubic'}), 2)",
            marks=pytest.mark.slow,  # the same step as load_unet's; 25 s of imports
        ),
    ],
    ids=["load_unet", "pre-ray-check"],
)
def test_huge_channel_counts_are_refused_within_3_gib(tmp_path, bases, call):
    """In a subprocess limited to 3 GiB of address space: a config asking for about 18 G
    parameters (72 GB as float32) is refused in one line, within a minute of torch's import,
    by the loader and by the pre-Ray check."""
    base, config = bases["UNet2DModel"]
    folder = _folder(tmp_path, {**config, "block_out_channels": [8192, 8192],
                                "norm_num_groups": 32}, base / WEIGHTS_NAME)  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", REFUSE.format(call=call), str(folder)],
        capture_output=True, text=True, timeout=300, env=env, cwd=ROOT,
        preexec_fn=_limit_memory,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert "over the cap of" in lines[0] and str(folder) in lines[0]
    assert time.perf_counter() - start < 120
