"""Train the compo benchmark's feature CNN on the disjoint pretraining class set.

The pretraining classes are the shapes of :data:`fedlab.clients.zsl.compo.PRETRAIN_SHAPES`
(pentagon, star, bar: no benchmark class has them) in every colour, size and count, 48 combinations
x ``--per-class`` images. One cross-entropy head per factor (shape, colour, size, count), Adam,
the shared training loop. Writes ``clients/zsl/weights/compo_cnn.safetensors`` (atomically).

    OMP_NUM_THREADS=1 python simulations/zsl_compo_pretrain.py
"""

from __future__ import annotations

import argparse
import logging
import time

import torch
import torch.nn.functional as F
from fedlab.clients.zsl import compo
from safetensors.torch import save_file
from torch.utils.data import TensorDataset

from fedlab.atomic import atomic_write
from fedlab.training import TrainConfig, train

log = logging.getLogger("fedlab.zsl_compo_pretrain")


def pretrain(per_class: int = 60, epochs: int = 20, seed: int = 0) -> compo.CompoFeatureNet:
    """The feature CNN trained on the pretraining set (multi-head cross-entropy)."""
    images, factors = compo.render_pretraining(per_class)
    data = TensorDataset(torch.from_numpy(images), torch.from_numpy(factors))
    torch.manual_seed(seed)
    net = compo.CompoFeatureNet()

    def step(model, batch):
        x, y = batch
        feats = model(x)
        losses = [F.cross_entropy(head(feats), y[:, i]) for i, head in enumerate(model.heads)]
        heads = zip(compo.FACTORS, model.heads, strict=True)
        accs = {f"acc-{name}": (head(feats).argmax(1) == y[:, i]).float().mean().item()
                for i, (name, head) in enumerate(heads)}  # fmt: skip
        return sum(losses), accs

    result = train(net, data, step, TrainConfig(epochs=epochs, batch_size=64, optimizer="adam",
                                                lr=0.003), seed=seed)  # fmt: skip
    log.info("pretraining: %s", {k: round(v, 3) for k, v in result.metrics.items()})
    return net.eval()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--per-class", type=int, default=60)
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--out", default=str(compo.WEIGHTS), help="where to write the weights")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(1)
    started = time.perf_counter()
    net = pretrain(args.per_class, args.epochs)
    state = {k: v.contiguous() for k, v in net.state_dict().items()}
    atomic_write(args.out, lambda p: save_file(state, str(p)))
    log.info("wrote %s in %.0f s", args.out, time.perf_counter() - started)


if __name__ == "__main__":
    main()
