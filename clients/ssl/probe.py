"""The fixed linear-probe protocol that every FedFoA figure uses.

Frozen encoder features (or raw pixels) are standardized, a multinomial logistic regression's
inverse regularization ``C`` is chosen by stratified k-fold cross-validation on the labelled
training split only (the scaler is refit inside each fold), and accuracy is measured once on the
held-out split.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

C_GRID = (0.01, 0.1, 1.0, 10.0)


@dataclass(frozen=True)
class ProbeResult:
    """Held-out accuracy, the ``C`` that cross-validation chose, and the held-out predictions."""

    accuracy: float
    c: float
    predictions: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    def accuracy_on(self, test_y: np.ndarray, classes: np.ndarray) -> float | None:
        """Accuracy on the held-out examples whose label is in ``classes`` (None if there are
        none)."""
        mask = np.isin(test_y, classes)
        if not mask.any():
            return None
        return float(np.mean(self.predictions[mask] == test_y[mask]))


@torch.no_grad()
def extract_features(
    model: nn.Module,
    images: torch.Tensor,
    batch_size: int = 256,
    device: torch.device | str = "cpu",
) -> np.ndarray:
    """``model(images)`` in eval mode, as float64 numpy (N, F)."""
    was_training = model.training
    model.to(device).eval()
    out = [
        model(images[i : i + batch_size].to(device)).cpu()
        for i in range(0, len(images), batch_size)
    ]
    model.train(was_training)
    return torch.cat(out).double().numpy()


def linear_probe(
    train_x: np.ndarray,
    train_y: np.ndarray,
    test_x: np.ndarray,
    test_y: np.ndarray,
    *,
    folds: int = 3,
    c_grid: tuple[float, ...] = C_GRID,
    seed: int = 0,
) -> ProbeResult:
    """Standardize, choose C by cross-validation on the training split, score the held-out split."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV, StratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    pipe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500))
    search = GridSearchCV(
        pipe,
        {"logisticregression__C": list(c_grid)},
        cv=StratifiedKFold(folds, shuffle=True, random_state=seed),
        n_jobs=1,
    )
    search.fit(np.asarray(train_x, np.float64).reshape(len(train_x), -1), train_y)
    predictions = search.predict(np.asarray(test_x, np.float64).reshape(len(test_x), -1))
    acc = float(np.mean(predictions == np.asarray(test_y)))
    return ProbeResult(acc, float(search.best_params_["logisticregression__C"]), predictions)


def probe_model(
    model: nn.Module,
    train_images: torch.Tensor,
    train_y: np.ndarray,
    test_images: torch.Tensor,
    test_y: np.ndarray,
    *,
    seed: int = 0,
    device: torch.device | str = "cpu",
) -> ProbeResult:
    """:func:`linear_probe` on the frozen features of ``model``."""
    return linear_probe(
        extract_features(model, train_images, device=device),
        train_y,
        extract_features(model, test_images, device=device),
        test_y,
        seed=seed,
    )
