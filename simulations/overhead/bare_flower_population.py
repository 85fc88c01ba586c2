"""Bare Flower with N virtual nodes: each round samples 100 of them and exchanges a few bytes.

The baseline of ``simulations/population_bench.py``: Flower 1.42's ``run_simulation`` (Ray
backend, one CPU per client) with ``--nodes`` virtual SuperNodes, a ServerApp that samples
``--sampled`` node ids per round and sends each a one-value query, and a ClientApp that answers
with one value. It writes each round's wall time to ``--out`` (JSON).

    python simulations/overhead/bare_flower_population.py --nodes 1000 --rounds 4 --out r.json
"""

from __future__ import annotations

import argparse
import json
import random
import time
import warnings

from flwr.app import ConfigRecord, Context, Message, MessageType, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid, ServerApp
from flwr.simulation import run_simulation


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, required=True)
    parser.add_argument("--sampled", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--cpus", type=int, default=2)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()

    client = ClientApp()

    @client.query()
    def answer(msg: Message, context: Context) -> Message:
        value = int(msg.content["q"]["v"])
        return Message(RecordDict({"a": ConfigRecord({"v": value + 1})}), reply_to=msg)

    server = ServerApp()

    @server.main()
    def run(grid: Grid, context: Context) -> None:
        while len(list(grid.get_node_ids())) < args.nodes:
            time.sleep(0.2)
        rng = random.Random(0)
        seconds = []
        for _ in range(args.rounds):
            start = time.perf_counter()
            nodes = rng.sample(list(grid.get_node_ids()), args.sampled)
            messages = [
                Message(RecordDict({"q": ConfigRecord({"v": i})}), message_type=MessageType.QUERY,
                        dst_node_id=n)
                for i, n in enumerate(nodes)
            ]  # fmt: skip
            replies = list(grid.send_and_receive(messages, timeout=3600))
            assert len(replies) == args.sampled
            seconds.append(time.perf_counter() - start)
        with open(args.out, "w") as f:
            json.dump({"nodes": args.nodes, "round-seconds": seconds}, f)

    backend = {"client_resources": {"num_cpus": 1}, "init_args": {"num_cpus": args.cpus}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        run_simulation(server_app=server, client_app=client, num_supernodes=args.nodes,
                       backend_name="ray", backend_config=backend)  # fmt: skip


if __name__ == "__main__":
    main()
