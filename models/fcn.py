"""The fully convolutional classifier of Wang et al. 2017, the feature extractor of FID/IS and the CAS model.

Wang, Yan, Oates, "Time series classification from scratch with deep neural networks: a strong
baseline", IJCNN 2017. The model and its eval-mode inference live here; training and the per-dataset
disk cache (one FCN scores every trial of a study) live in tune/engine/fcn.py.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from models.modes import eval_mode

FEATURE_DIM = 128


def _block(c_in: int, c_out: int, kernel: int) -> nn.Sequential:
    # "same" padding written out (left (k-1)//2, right k//2, as Keras and torch's padding="same"), which
    # spares torch a padded copy for even kernels; bias is redundant before BatchNorm
    return nn.Sequential(nn.ConstantPad1d(((kernel - 1) // 2, kernel // 2), 0.0),
                         nn.Conv1d(c_in, c_out, kernel, bias=False), nn.BatchNorm1d(c_out), nn.ReLU())


class FCN(nn.Module):
    def __init__(self, in_channels: int, n_classes: int):
        super().__init__()
        if in_channels < 1 or n_classes < 2:
            raise ValueError(f"FCN needs in_channels >= 1 and n_classes >= 2, got {in_channels} and {n_classes}")
        self.kwargs = {"in_channels": in_channels, "n_classes": n_classes}  # rebuilds the model from a checkpoint
        self.body = nn.Sequential(_block(in_channels, 128, 8), _block(128, 256, 5), _block(256, FEATURE_DIM, 3))
        self.head = nn.Linear(FEATURE_DIM, n_classes)

    @property
    def n_classes(self) -> int:
        return self.head.out_features

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """x: (b, c, l) -> global-average-pooled features (b, 128)."""
        return self.body(x).mean(dim=-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))  # (b, n_classes)


@dataclass(frozen=True)
class FCNPrediction:
    features: np.ndarray  # (n, 128)
    probs: np.ndarray     # (n, n_classes)

    @property
    def labels(self) -> np.ndarray:
        return self.probs.argmax(axis=1)


def as_series_batch(x: np.ndarray | torch.Tensor) -> torch.Tensor:
    """(n, l) or (n, c, l) array/tensor -> float32 tensor (n, c, l)."""
    x = torch.as_tensor(x, dtype=torch.float32)
    if x.ndim == 2:
        x = x.unsqueeze(1)
    if x.ndim != 3:
        raise ValueError(f"series must have shape (n, l) or (n, c, l), got {tuple(x.shape)}")
    return x


def check_labels(y: np.ndarray | torch.Tensor, n_classes: int, what: str = "training") -> torch.Tensor:
    """Labels as int64; every class in [0, n_classes) present, none beyond the head."""
    y = torch.as_tensor(y).long().cpu()
    if y.numel() and (int(y.min()) < 0 or int(y.max()) >= n_classes):
        raise ValueError(f"{what} labels span [{int(y.min())}, {int(y.max())}] but the FCN head has "
                         f"{n_classes} classes; encode labels as 0..n_classes-1 or raise n_classes")
    missing = sorted(set(range(n_classes)) - set(y.unique().tolist()))
    if missing:
        raise ValueError(f"class(es) {missing} have no {what} series; drop them or use a split that holds them")
    return y


@torch.no_grad()
def predict(model: FCN, x: np.ndarray | torch.Tensor, *, batch_size: int = 512) -> FCNPrediction:
    """Eval-mode features and class probabilities, on the model's device; BatchNorm statistics never see x."""
    device = next(model.parameters()).device
    x = as_series_batch(x)
    feats, probs = [], []
    with eval_mode(model):
        for xb in x.split(batch_size):
            f = model.features(xb.to(device))
            feats.append(f.float().cpu())
            probs.append(F.softmax(model.head(f), dim=-1).float().cpu())
    return FCNPrediction(torch.cat(feats).numpy(), torch.cat(probs).numpy())


def accuracy(model: FCN, x: np.ndarray | torch.Tensor, y: np.ndarray | torch.Tensor, *, batch_size: int = 512) -> float:
    y = torch.as_tensor(y).cpu().numpy()
    return float((predict(model, x, batch_size=batch_size).labels == y).mean())
