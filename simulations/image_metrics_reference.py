"""Recompute piq's HaarPSI and GMSD figures that tests/test_image_quality.py checks
fedlab.image_quality against.

Needs piq (``pip install --no-deps piq``; it is not a fedlab dependency). piq's package
``__init__`` imports torchvision; where that is missing, piq's sources are copied to a
temporary folder with an empty ``__init__.py`` and imported from there (this script only).

``python simulations/image_metrics_reference.py`` prints the ``REFERENCE`` table (float32 and
float64 figures per input of the test's ``cases()``) and the largest relative difference of
the port; ``--write`` also replaces the table in the test file (update the versions named in
its docstring by hand).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import importlib.util
import platform
import re
import shutil
import sys
import tempfile
from pathlib import Path

import numpy
import scipy
import skimage
import torch

ROOT = Path(__file__).resolve().parents[1]
TEST = ROOT / "tests" / "test_image_quality.py"


def load_piq(tmp: Path):
    """piq's ``haarpsi`` and ``gmsd`` functions, without torchvision if need be."""
    if importlib.util.find_spec("torchvision") is None:
        spec = importlib.util.find_spec("piq")
        if spec is None:
            sys.exit("piq is not installed: pip install --no-deps piq")
        source = Path(next(iter(spec.submodule_search_locations)))
        shutil.copytree(source, tmp / "piq", ignore=shutil.ignore_patterns("__pycache__"))
        (tmp / "piq" / "__init__.py").write_text("")
        sys.path.insert(0, str(tmp))
    haarpsi = importlib.import_module("piq.haarpsi").haarpsi
    gmsd = importlib.import_module("piq.gmsd").gmsd
    return haarpsi, gmsd


def load_test_module():
    spec = importlib.util.spec_from_file_location("test_image_quality", TEST)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="rewrite the test's REFERENCE")
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        piq_haarpsi, piq_gmsd = load_piq(Path(tmp))
        test = load_test_module()
        rows, worst = {}, {"haarpsi": 0.0, "gmsd": 0.0}
        for name, (x, y, data_range) in test.cases().items():
            row = []
            for dtype in (torch.float32, torch.float64):
                a, b = test.to_tensor(x, dtype), test.to_tensor(y, dtype)
                for metric, piq_fn, port in (("haarpsi", piq_haarpsi, test.haarpsi),
                                             ("gmsd", piq_gmsd, test.gmsd)):  # fmt: skip
                    want = float(piq_fn(a, b, data_range=data_range))
                    got = float(port(a, b, data_range=data_range))
                    rel = abs(got - want) / max(abs(want), 1e-12)
                    worst[metric] = max(worst[metric], rel)
                    row.append(want)
            rows[name] = row
    versions = (
        f"piq {importlib.metadata.version('piq')} (torch {torch.__version__}, scikit-image "
        f"{skimage.__version__}, numpy {numpy.__version__}, scipy {scipy.__version__}, "
        f"{platform.machine()})"
    )
    table = "".join(  # one figure a line, as ruff formats it
        f'    "{name}": (\n' + "".join(f"        {v!r},\n" for v in r) + "    ),\n"
        for name, r in rows.items()
    )
    print(versions)
    print("REFERENCE = {\n" + table + "}")
    print("largest relative difference of the port:", worst)
    if args.write:
        text = TEST.read_text()
        head = "REFERENCE: dict[str, tuple[float, float, float, float]] = {"
        text = re.sub(re.escape(head) + r".*?\n}\n", lambda _: head + "\n" + table + "}\n", text,
                      count=1, flags=re.S)  # fmt: skip
        TEST.write_text(text)
        print(f"wrote {TEST.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
