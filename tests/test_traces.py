"""Trace format: round trip, a hand-written trace, and every refusal the reader promises."""

from __future__ import annotations

import json

import pytest
import torch
from fedlab.attacks.base import ModelSpec, labels_from_weight_gradient
from safetensors.torch import save_file

from fedlab.errors import FedlabError
from fedlab.traces import MANIFEST, TraceReader, TraceWriter

SPEC = {"name": "lenet", "kwargs": {"num_classes": 10, "image_size": 16}}


def _model_and_batch(seed: int = 0):
    torch.manual_seed(seed)
    model = ModelSpec(SPEC["name"], SPEC["kwargs"]).build()
    images = torch.rand(2, 3, 16, 16)
    labels = torch.tensor([3, 8])
    return model, images, labels


def _write_fedsgd_trace(path, lr=0.1):
    """One FedSGD step as a client would do it, recorded through the writer."""
    model, images, labels = _model_and_batch()
    start = {k: v.clone() for k, v in model.state_dict().items()}
    loss = torch.nn.functional.cross_entropy(model(images), labels)
    grads = torch.autograd.grad(loss, list(model.parameters()))
    sent = {n: start[n] - lr * g for (n, _), g in zip(model.named_parameters(), grads, strict=True)}
    writer = TraceWriter(path)
    gpath = writer.write_global(1, start)
    writer.add(
        server_round=1,
        client=5,
        received=sent,
        global_path=gpath,
        model=SPEC,
        batch_size=2,
        image_shape=(3, 16, 16),
        num_classes=10,
        lr=lr,
        ground_truth=(images, labels),
        dp={"mechanism": "none"},
    )
    return grads, images, labels


def test_writer_reader_round_trip(tmp_path):
    grads, images, labels = _write_fedsgd_trace(tmp_path)
    reader = TraceReader(tmp_path)
    (record,) = reader.select(rounds=[1], clients=[5])
    assert reader.select(clients=[4]) == []
    assert record.target_id == "round-1/client-5"
    inp = reader.attack_input(record)
    for g, h in zip(grads, inp.target_gradients(), strict=True):
        torch.testing.assert_close(g, h, rtol=1e-4, atol=1e-6)
    truth, truth_labels = reader.ground_truth(record)
    torch.testing.assert_close(truth, images)
    assert truth_labels.tolist() == labels.tolist()
    assert inp.dp == {"mechanism": "none"} and inp.batch_size == 2
    # appending through a new writer keeps the old record
    sent = TraceReader(tmp_path).load(record, record.received)
    TraceWriter(tmp_path).add(
        server_round=2,
        client=5,
        received=sent,
        global_path=record.global_,
        model=SPEC,
        batch_size=2,
        image_shape=(3, 16, 16),
        num_classes=10,
        lr=0.1,
    )
    assert [r.round for r in TraceReader(tmp_path).records] == [1, 2]
    assert not list(tmp_path.rglob("*.tmp"))


def test_a_hand_written_trace_without_our_writer_is_readable(tmp_path):
    """Raw gradients under other names, written with json + safetensors only."""
    model, images, labels = _model_and_batch(seed=4)
    images, labels = images[:1], labels[:1]
    loss = torch.nn.functional.cross_entropy(model(images), labels)
    grads = torch.autograd.grad(loss, list(model.parameters()))
    names = [f"layer{i}" for i in range(len(grads))]
    save_file(
        {n: g.contiguous() for n, g in zip(names, grads, strict=True)}, tmp_path / "g.safetensors"
    )
    save_file(
        {n: p.detach().contiguous() for n, p in zip(names, model.parameters(), strict=True)},
        tmp_path / "w.safetensors",
    )
    (tmp_path / MANIFEST).write_text(
        json.dumps(
            {
                "format": "fedlab-trace",
                "format_version": "1.2",
                "records": [
                    {
                        "round": 7,
                        "client": 0,
                        "kind": "gradients",
                        "received": "g.safetensors",
                        "global": "w.safetensors",
                        "model": SPEC,
                        "batch_size": 1,
                        "image_shape": [3, 16, 16],
                        "num_classes": 10,
                        "param_names": names,
                        "framework": "other",
                    }
                ],
            }
        )
    )
    reader = TraceReader(tmp_path)
    inp = reader.attack_input(reader.records[0])
    assert reader.records[0].extra == {"framework": "other"}
    assert labels_from_weight_gradient(inp.gradients[-2], 1).tolist() == labels.tolist()
    with pytest.raises(FedlabError, match="no ground truth"):
        reader.ground_truth(reader.records[0])


def _edit_manifest(path, fn):
    obj = json.loads((path / MANIFEST).read_text())
    fn(obj)
    (path / MANIFEST).write_text(json.dumps(obj))


@pytest.mark.parametrize("version", ["2.0", "0.9", ""])
def test_unknown_major_version_is_refused(tmp_path, version):
    _write_fedsgd_trace(tmp_path)
    _edit_manifest(tmp_path, lambda m: m.update(format_version=version))
    with pytest.raises(FedlabError, match="format_version"):
        TraceReader(tmp_path)


def test_missing_manifest_and_missing_keys_are_refused(tmp_path):
    with pytest.raises(FedlabError, match="no manifest.json"):
        TraceReader(tmp_path)
    _write_fedsgd_trace(tmp_path)
    _edit_manifest(tmp_path, lambda m: m["records"][0].pop("num_classes"))
    with pytest.raises(FedlabError, match="misses keys.*num_classes"):
        TraceReader(tmp_path)
    (tmp_path / MANIFEST).write_text("{not json")
    with pytest.raises(FedlabError, match="not valid JSON"):
        TraceReader(tmp_path)


def test_missing_file_is_refused(tmp_path):
    _write_fedsgd_trace(tmp_path)
    reader = TraceReader(tmp_path)
    (tmp_path / reader.records[0].received).unlink()
    with pytest.raises(FedlabError, match="does not exist"):
        reader.attack_input(reader.records[0])


def test_truncated_safetensors_is_refused(tmp_path):
    _write_fedsgd_trace(tmp_path)
    reader = TraceReader(tmp_path)
    file = tmp_path / reader.records[0].received
    file.write_bytes(file.read_bytes()[:300])
    with pytest.raises(FedlabError, match="not a readable safetensors"):
        reader.attack_input(reader.records[0])


def test_shapes_that_disagree_with_the_manifest_are_refused(tmp_path):
    _write_fedsgd_trace(tmp_path)
    _edit_manifest(tmp_path, lambda m: m["records"][0]["model"]["kwargs"].update(image_size=32))
    reader = TraceReader(tmp_path)
    with pytest.raises(FedlabError, match=r"'fc.weight' has shape \[10, 192\].*\[10, 768\]"):
        reader.attack_input(reader.records[0])
    _edit_manifest(tmp_path, lambda m: m["records"][0].update(batch_size=3))
    reader = TraceReader(tmp_path)
    with pytest.raises(FedlabError, match="disagree with the manifest"):
        reader.ground_truth(reader.records[0])


def test_nan_values_and_unknown_models_are_refused(tmp_path):
    _write_fedsgd_trace(tmp_path)
    reader = TraceReader(tmp_path)
    record = reader.records[0]
    data = reader.load(record, record.received)
    data["fc.bias"][0] = float("inf")
    save_file(data, tmp_path / record.received)
    with pytest.raises(FedlabError, match="NaN or Inf"):
        reader.attack_input(record)
    _edit_manifest(tmp_path, lambda m: m["records"][0]["model"].update(name="vgg-unknown"))
    reader = TraceReader(tmp_path)
    with pytest.raises(FedlabError, match="unknown model 'vgg-unknown'"):
        reader.attack_input(reader.records[0])
