"""Client updates as flat float arrays: difference to the global model, norms, clipping.

An update is a ``dict[str, np.ndarray]`` of the floating-point arrays a client sends, minus the
global arrays of the same name that the server sent it (an array the server did not send, such
as a relation matrix, counts whole). Integer buffers (counters) carry no update and are left out.
"""

from __future__ import annotations

import numpy as np
from flwr.app import Array, ArrayRecord

from fedlab.errors import FedlabError

Update = dict[str, np.ndarray]


def float_arrays(record: ArrayRecord) -> Update:
    """The floating-point arrays of ``record`` as float64 numpy arrays."""
    out: Update = {}
    for key, value in record.items():
        array = value.numpy()
        if np.issubdtype(array.dtype, np.floating):
            out[key] = array.astype(np.float64)
    return out


def update_of(reply: ArrayRecord, sent: Update) -> Update:
    """``reply - sent`` for every floating-point array of ``reply``."""
    received = float_arrays(reply)
    return {k: v - sent[k] if k in sent and sent[k].shape == v.shape else v
            for k, v in received.items()}  # fmt: skip


def norm(update: Update, ord: int = 2) -> float:
    """L2 (``ord=2``) or L1 (``ord=1``) norm of all arrays taken together as one vector."""
    if ord == 1:
        return float(sum(np.abs(v).sum() for v in update.values()))
    return float(np.sqrt(sum(np.square(v).sum() for v in update.values())))


def clip(update: Update, clip_norm: float, ord: int = 2) -> tuple[Update, float]:
    """Scale ``update`` so its norm is at most ``clip_norm``; return it and the norm before.

    Parameters
    ----------
    update : dict of str to ndarray
    clip_norm : float
        The bound C > 0.
    ord : {2, 1}
        Which norm bounds the update.

    Returns
    -------
    clipped : dict of str to ndarray
        ``update * min(1, C / ||update||)``.
    before : float
        ``||update||`` before clipping.
    """
    before = norm(update, ord)
    factor = 1.0 if before <= clip_norm else clip_norm / before
    return {k: v * factor for k, v in update.items()}, before


def apply_update(template: ArrayRecord, sent: Update, update: Update) -> ArrayRecord:
    """``sent + update`` in ``template``'s keys, order and dtypes (non-float arrays unchanged)."""
    out = {}
    for key, value in template.items():
        if key in update:
            base = sent.get(key)
            full = update[key] + (base if base is not None and base.shape == update[key].shape
                                  else 0.0)  # fmt: skip
            out[key] = Array(np.asarray(full, dtype=value.numpy().dtype))
        else:
            out[key] = value
    return ArrayRecord(out)


def with_sent_non_float(record: ArrayRecord, sent: ArrayRecord) -> ArrayRecord:
    """``record`` (a reply or an aggregate) with every array the server sent as non-float (a
    BatchNorm counter) replaced by the server's own value, in its dtype.

    Under DP nothing un-noised may be averaged into the release, and integer buffers cannot be
    clipped or noised (an inner strategy's mean would also turn them into floats); a non-float
    array the server did not send is refused.
    """
    out = {}
    for key, value in record.items():
        if key in sent and not np.issubdtype(sent[key].numpy().dtype, np.floating):
            out[key] = Array(sent[key].numpy().copy())
        elif key not in sent and not np.issubdtype(value.numpy().dtype, np.floating):
            raise FedlabError(
                f"a reply holds a non-float array {key!r} ({value.numpy().dtype}) that the server "
                "did not send; under DP it cannot be clipped or noised, so it cannot be averaged "
                "into the release: keep integer buffers in the model the server sends, or drop them"
            )
        else:
            out[key] = value
    return ArrayRecord(out)
