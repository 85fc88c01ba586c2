"""Client resources fitted to the machine (the GPU branch is checked with a mocked torch.cuda)."""

import os

import torch

from fedlab.simulation import backend_config


def test_cpu_only_machine_gets_one_cpu_per_client_and_no_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    config, device = backend_config(10)
    assert device == "cpu"
    assert config["client_resources"] == {"num_cpus": 1, "num_gpus": 0.0}
    assert config["init_args"] == {"num_cpus": os.cpu_count() or 1}


def test_gpu_fractions_fit_every_concurrent_client(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(os, "cpu_count", lambda: 4)
    config, device = backend_config(10)
    assert device == "cuda"
    assert config["client_resources"]["num_gpus"] == 0.25  # 4 clients at once share one GPU
    assert config["init_args"]["num_gpus"] == 1
    config, device = backend_config(10, gpu="off")
    assert device == "cpu" and config["client_resources"]["num_gpus"] == 0.0


def test_joining_a_cluster_passes_its_address_only(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    config, _ = backend_config(3, ray_address="127.0.0.1:6379")
    assert config["init_args"] == {"address": "127.0.0.1:6379"}
