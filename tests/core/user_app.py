"""A researcher's folder whose module names are common in this field: strategies.py, clients/,
attacks.py and myapp.py. fedlab's own modules live under ``fedlab.*``, so neither side shadows
the other; the tests write this folder and run ``--app myapp:app`` from it."""

from __future__ import annotations

from pathlib import Path

MYAPP = '''
"""The researcher's app: fedlab's fedavg with a train handler that uses their own modules."""
import dataclasses

import attacks
import strategies
from clients import helper

from fedlab.apps import fedavg as _fedavg
from fedlab.client import handle_train


def train(msg, context, config):
    # Runs on the clients (in Ray's workers under flower-simulation): each name is the user's.
    assert (strategies.OWNER, attacks.OWNER, helper.OWNER) == ("user", "user", "user")
    return handle_train(msg, context, config)


app = dataclasses.replace(
    _fedavg, name="myapp", client_handlers={**_fedavg.client_handlers, "train": train}
)
'''

#: one round, two clients, the smallest supervised job
RUN = ["--num-supernodes", "2", "--run-config", "num-server-rounds=1", "local-epochs=1"]


def write_user_folder(folder: Path) -> Path:
    """The user's folder: myapp.py beside strategies.py, attacks.py and a clients/ package."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "myapp.py").write_text(MYAPP)
    (folder / "strategies.py").write_text('OWNER = "user"\n')
    (folder / "attacks.py").write_text('OWNER = "user"\n')
    (folder / "clients").mkdir(exist_ok=True)
    (folder / "clients" / "__init__.py").write_text("")
    (folder / "clients" / "helper.py").write_text('OWNER = "user"\n')
    return folder


#: run in the user's folder after a run: where each name came from
WHERE = (
    "import json, sys; sys.path.insert(0, '.')\n"
    "import attacks, strategies, clients.helper, myapp\n"
    "import fedlab.strategies.fedfoa, fedlab.attacks.dlg, fedlab.clients.supervised.app\n"
    "print(json.dumps({m: sys.modules[m].__file__ for m in ('attacks', 'strategies', "
    "'clients.helper', 'myapp', 'fedlab.strategies.fedfoa', 'fedlab.attacks.dlg', "
    "'fedlab.clients.supervised.app')}))\n"
)
