"""A stop request (Ctrl-C) ends a run at the next round boundary, in process (no Ray)."""

import json
import os
import signal
import threading

import pytest

from fedlab.apps import fedavg
from fedlab.errors import RunStopped
from fedlab.inprocess import run_in_process
from fedlab.server import RoundRecorder, StopRequest
from fedlab.simulation import interrupt_handling

SMALL = {"num-server-rounds": 5, "num-supernodes": 2, "local-epochs": 1, "model": "mlp",
         "device": "cpu"}  # fmt: skip


def test_stop_request_after_round_one_keeps_it_and_says_why(tmp_path, monkeypatch):
    stop = StopRequest()
    end_round = RoundRecorder.end_round

    def end_round_then_interrupt(self, server_round, arrays, evaluation):
        end_round(self, server_round, arrays, evaluation)
        if server_round == 1:
            stop.request("interrupted by SIGINT (test)")

    monkeypatch.setattr(RoundRecorder, "end_round", end_round_then_interrupt)
    cfg = fedavg.resolve_config({**SMALL, "out-dir": str(tmp_path / "run")})
    summary = run_in_process(fedavg, cfg, stop=stop)

    assert summary["rounds-finished"] == 1 and summary["rounds-planned"] == 5
    assert summary["stopped-early"] == "round 2 not started: interrupted by SIGINT (test)"
    written = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert written["stopped-early"] == summary["stopped-early"]
    assert [r["round"] for r in json.loads((tmp_path / "run" / "history.json").read_text())] == [1]


def test_without_a_stop_request_every_round_runs(tmp_path):
    cfg = fedavg.resolve_config({**SMALL, "num-server-rounds": 2, "out-dir": str(tmp_path / "r")})
    summary = run_in_process(fedavg, cfg, stop=StopRequest())
    assert summary["rounds-finished"] == 2 and summary["stopped-early"] is None


def test_stop_request_keeps_the_first_reason():
    stop = StopRequest()
    assert not stop.is_set()
    stop.request("first")
    stop.request("second")
    assert stop.is_set() and stop.reason == "first"


def test_recorder_refuses_to_start_a_round_once_stopped():
    stop = StopRequest()
    stop.request("interrupted")
    recorder = RoundRecorder(inner=None, run=None, min_replies=1, num_rounds=3, stop=stop)  # type: ignore[arg-type]
    with pytest.raises(RunStopped, match="round 3 not started: interrupted"):
        recorder.configure_train(3, None, None, None)  # type: ignore[arg-type]


def test_first_sigint_requests_a_stop_second_stops_at_once():
    stop = StopRequest()
    stopped_now = threading.Event()
    with interrupt_handling(stop, stop_now=stopped_now.set):
        os.kill(os.getpid(), signal.SIGINT)
        assert stop.wait(5) and "SIGINT" in stop.reason and not stopped_now.is_set()
        os.kill(os.getpid(), signal.SIGINT)
        assert stopped_now.wait(5)
    # Outside the run Ctrl-C is Python's KeyboardInterrupt again.
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
