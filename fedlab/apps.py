"""The named apps: ``flower-simulation --app fedlab.apps:<name>``.

Each is an :class:`~fedlab.appspec.AppSpec`; a researcher's own module can define one the same
way and pass ``--app mymodule:myapp``.
"""

from clients.dpfedavg.app import dpfedavg
from clients.ssl.app import fedfoa
from clients.supervised.app import fedavg
from clients.zsl.app import zsl_ar2, zsl_parsnets
from fedlab.appspec import AppSpec

__all__ = ["AppSpec", "dpfedavg", "fedavg", "fedfoa", "zsl_ar2", "zsl_parsnets"]
