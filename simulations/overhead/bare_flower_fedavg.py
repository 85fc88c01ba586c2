"""Baseline for the overhead benchmark: the `fedavg` app's work written with bare Flower.

Same data (scikit-learn digits, the same stratified 80/20 split and IID partitions), the same
model, optimizer, local epochs, rounds, and central evaluation every round, on Flower's Message
API and `run_simulation` with the same Ray resources; none of fedlab's run folder, node-order
query, configs or registries.

Run: python simulations/overhead/bare_flower_fedavg.py [--rounds 10] [--supernodes 10]
"""

from __future__ import annotations

import argparse
import os
import random
import warnings

import numpy as np
import torch
import torch.nn.functional as F
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAvg
from flwr.simulation import run_simulation
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn

SEED, LOCAL_EPOCHS, BATCH, LR = 0, 3, 32, 0.05


def model() -> nn.Module:
    w = 32
    return nn.Sequential(
        nn.Conv2d(1, w, 3, padding=1), nn.GroupNorm(4, w), nn.ReLU(),
        nn.Conv2d(w, 2 * w, 3, padding=1, stride=2), nn.GroupNorm(4, 2 * w), nn.ReLU(),
        nn.Conv2d(2 * w, 2 * w, 3, padding=1), nn.GroupNorm(4, 2 * w), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2 * w, 10),
    )  # fmt: skip


def data():
    d = load_digits()
    x = torch.tensor(d.images / 16.0, dtype=torch.float32)[:, None]
    y = torch.tensor(d.target)
    tr, te = train_test_split(np.arange(len(y)), test_size=0.2, random_state=0, stratify=d.target)
    return x[np.sort(tr)], y[np.sort(tr)], x[np.sort(te)], y[np.sort(te)]


def client_app(num_nodes: int) -> ClientApp:
    app = ClientApp()

    @app.train()
    def train(msg: Message, context: Context) -> Message:
        torch.set_num_threads(1)
        pid = int(context.node_config["partition-id"])
        x, y, _, _ = data()
        idx = np.array_split(np.random.default_rng(SEED).permutation(len(y)), num_nodes)[pid]
        net = model()
        net.load_state_dict(msg.content["arrays"].to_torch_state_dict())
        opt = torch.optim.SGD(net.parameters(), lr=LR, momentum=0.9)
        for _ in range(LOCAL_EPOCHS):
            for batch in torch.from_numpy(idx)[torch.randperm(len(idx))].split(BATCH):
                opt.zero_grad()
                F.cross_entropy(net(x[batch]), y[batch]).backward()
                opt.step()
        metrics = MetricRecord({"num-examples": len(idx)})
        return Message(
            RecordDict({"arrays": ArrayRecord(net.state_dict()), "metrics": metrics}), reply_to=msg
        )

    return app


def server_app(rounds: int, num_nodes: int) -> ServerApp:
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        random.seed(SEED)
        torch.manual_seed(SEED)
        _, _, xt, yt = data()

        def evaluate(server_round: int, arrays: ArrayRecord) -> MetricRecord:
            net = model()
            net.load_state_dict(arrays.to_torch_state_dict())
            with torch.no_grad():
                acc = (net(xt).argmax(1) == yt).float().mean().item()
            return MetricRecord({"accuracy": acc})

        strategy = FedAvg(
            fraction_evaluate=0.0, min_train_nodes=num_nodes, min_available_nodes=num_nodes
        )
        result = strategy.start(
            grid,
            ArrayRecord(model().state_dict()),
            num_rounds=rounds,
            train_config=ConfigRecord(),
            evaluate_fn=evaluate,
        )
        final = result.evaluate_metrics_serverapp[rounds]["accuracy"]
        print(f"bare flower: final accuracy {final:.4f}", flush=True)

    return app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--supernodes", type=int, default=10)
    args = parser.parse_args()
    backend = {"client_resources": {"num_cpus": 1, "num_gpus": 0.0},
               "init_args": {"num_cpus": os.cpu_count() or 1}}  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run_simulation(
            server_app(args.rounds, args.supernodes),
            client_app(args.supernodes),
            num_supernodes=args.supernodes,
            backend_config=backend,
        )


if __name__ == "__main__":
    main()
