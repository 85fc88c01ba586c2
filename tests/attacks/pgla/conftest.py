"""Make ``attacks.pgla`` resolve to the package, not to this test folder.

pytest puts ``tests/`` on ``sys.path`` (rootdir conftest), so ``import attacks`` finds
``tests/attacks`` as a namespace package before the editable install's finder is asked, and
``attacks.pgla`` then resolves to this folder. Putting the repository root on ``sys.path`` lets
the real, regular package win (a regular package beats namespace portions). The lasting fix is
``pythonpath = ["."]`` under ``[tool.pytest.ini_options]``.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = str(Path(__file__).resolve().parents[3])
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
