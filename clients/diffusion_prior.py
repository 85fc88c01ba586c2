"""What the federated diffusion-prior apps share (``diffusion``/``diffsr`` and
``pih_prior``/``harmonization``): the prior-training keys, the strategy, the pre-Ray check and
the train handler that may leave the prior frozen.

Clients train an epsilon-prediction ``UNet2DModel`` on random crops of their own images with
THE loop; the server averages it (FedAvg, or the configured strategy). Each app names its
workload and shipped prior in its config subclass.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from fedlab.strategies.fedavg import build_strategy
from flwr.app import Context, Message, MetricRecord, RecordDict
from flwr.serverapp.strategy import Strategy

from fedlab.app_check import check_by_building
from fedlab.client import client_info, handle_train
from fedlab.config import check_choice, check_positive
from fedlab.errors import FedlabError
from fedlab.key_groups import LocalTrainingKeys, RunConfig, SamplingKeys, StrategyKeys

UNET_CONFIGS = ("tiny", "cpu", "gpu")


def resolve_shipped(value: str, shipped: Path) -> str:
    """``"shipped"`` -> the folder shipped with the package; anything else unchanged."""
    return str(shipped) if value == "shipped" else value


@dataclass
class PriorConfig(LocalTrainingKeys, SamplingKeys, StrategyKeys, RunConfig):
    """The core, strategy and local-training groups plus the diffusion-prior keys."""

    #: The folder ``init-from="shipped"`` names (set by each app's subclass).
    SHIPPED_PRIOR: ClassVar[Path | None] = None

    optimizer: str = "adam"
    lr: float = 0.001
    batch_size: int = 16
    local_steps: int = 20
    unet: str = "cpu"
    crop_size: int = 32
    crops_per_client: int = 4096
    init_from: str = ""
    heldout_crops: int = 8
    save_prior: bool = True

    KEY_HELP: ClassVar[dict[str, str]] = {
        "unet": "UNet2DModel config: tiny (tests), cpu (about 0.9 M parameters) or gpu",
        "crop_size": "side of the random training crops in pixels",
        "crops_per_client": "random crops in one pass over a client's images (drawn by seed)",
        "init_from": "UNet folder to start from ('shipped': the repository's prior); empty: new",
        "heldout_crops": "crops per held-out image for the server's denoising loss",
        "save_prior": "write the final global UNet as a save_pretrained folder run/prior",
    }

    def validate(self) -> None:
        super().validate()
        check_choice(self, "unet", UNET_CONFIGS)
        check_positive(self, "crop_size", "crops_per_client", "heldout_crops")
        if self.crop_size % 4:
            raise FedlabError(
                f"crop-size must be a multiple of 4 (UNet downsampling), got {self.crop_size}"
            )

    def prior_folder(self) -> str:
        """The UNet folder ``init-from`` names (``shipped``: the app's shipped prior)."""
        if self.init_from == "shipped" and self.SHIPPED_PRIOR is None:
            raise FedlabError(f"{type(self).__name__} ships no prior; give init-from a folder")
        return resolve_shipped(self.init_from, self.SHIPPED_PRIOR or Path())

    def check_paths(self) -> None:
        """Folders named by the config exist and hold what the run loads (checked before Ray
        starts, not at parse time, so that a missing default folder does not block other
        values): ``init-from`` goes through :func:`fedlab.model_folder.check_model_folder`
        (safetensors only, config.json typed and bounded, the parameter count taken on the
        meta device, the weights' header matched; nothing allocated), and must be an RGB UNet
        (3 channels in and out, what the clients train on)."""
        if not self.init_from:
            return
        if not Path(self.prior_folder()).is_dir():
            raise FedlabError(
                f"init-from folder {self.prior_folder()!r} does not exist; give a UNet "
                "save_pretrained folder, 'shipped', or leave it empty for a new UNet"
            )
        from fedlab.model_folder import check_model_folder

        check_model_folder(self.prior_folder(), "unet", source="init-from",
                           require={"in_channels": (3,), "out_channels": (3,)})  # fmt: skip


def build_prior_strategy(config: PriorConfig, num_nodes: int, *,
                         evaluate_clients: bool = False) -> Strategy:  # fmt: skip
    """The configured strategy (FedAvg); every client evaluates when ``evaluate_clients``."""
    extra: dict[str, Any] = {}
    if evaluate_clients:
        extra = {"fraction_evaluate": 1.0, "min_evaluate_nodes": num_nodes}
    return build_strategy(config, num_nodes, **extra)


def check_prior_app(config: PriorConfig, num_nodes: int) -> None:
    """Before Ray: the named folders exist, the strategy builds, the first client's data load."""
    config.check_paths()
    check_by_building(build_prior_strategy)(config, num_nodes)


def handle_train_unless_frozen(msg: Message, context: Context, config: Any) -> Message:
    """Train the prior locally, or (``train-prior=false``) send the received one back."""
    if config.train_prior:
        return handle_train(msg, context, config)
    content = RecordDict({
        "arrays": msg.content["arrays"],
        "metrics": MetricRecord({"num-examples": 1}),
        "client": client_info(context),
    })  # fmt: skip
    return Message(content, reply_to=msg)
