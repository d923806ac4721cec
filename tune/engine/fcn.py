"""The dataset's FCN for FID / IS / CAS: trained once per dataset and preprocessing, cached on disk."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from datasets.ucr import UCRDataset
from evaluation.generative import stratified_holdout
from models.fcn import CachedFCN, accuracy, cached_fcn, train_fcn
from tune.config import Stage2Config
from tune.engine.checkpoints import CheckpointError, fingerprint
from tune.engine.loop import select_device


def _archive_train(data: UCRDataset) -> tuple[np.ndarray, np.ndarray]:
    """The archive's train split (train + validation) in a canonical row order: independent of the trial seed."""
    x = np.concatenate([data.x_train, data.x_val])
    y = np.concatenate([data.y_train, data.y_val])
    order = np.lexsort(np.column_stack([y, x]).T[::-1])
    return x[order], y[order]

def fcn_cache_key(data: UCRDataset, cfg: Stage2Config) -> str:
    """Dataset name + a hash of its preprocessed series (mean, std, NaN policy and length show in them)
    and of the FCN's training settings: a change to either trains a new FCN."""
    x, y = _archive_train(data)
    settings = [cfg.fcn_epochs, cfg.fcn_patience, cfg.fcn_batch_size, cfg.fcn_lr, cfg.fcn_val_fraction, cfg.fcn_seed,
                data.mean, data.std, data.classes]
    digest = fingerprint(x, y, data.x_test, data.y_test, np.frombuffer(repr(settings).encode(), np.uint8))
    return f"{data.name}-{digest[:12]}"

def fcn_for_dataset(data: UCRDataset, cache_dir: str | Path, cfg: Stage2Config) -> CachedFCN:
    """The dataset's FCN, trained once (early stopping on a fixed stratified part of the archive's train
    split) and loaded from `cache_dir` afterwards; `.meta["test_acc"]` is its test accuracy."""
    device = select_device(cfg.device)

    def train():
        x, y = _archive_train(data)
        fit, held = stratified_holdout(y, cfg.fcn_val_fraction, cfg.fcn_seed)
        if len(held) == 0:            # one series per class: select on the train split, as Wang et al. did
            held = fit
        model, info = train_fcn(x[fit], y[fit], x[held], y[held], epochs=cfg.fcn_epochs,
                                batch_size=cfg.fcn_batch_size, lr=cfg.fcn_lr, seed=cfg.fcn_seed, device=device,
                                n_classes=data.n_classes, patience=cfg.fcn_patience)
        return model, {**dataclasses.asdict(info), "test_acc": accuracy(model, data.x_test, data.y_test),
                       "n_fit": len(fit), "n_val": len(held)}

    cached = cached_fcn(cache_dir, fcn_cache_key(data, cfg), train, device=device)
    if cached.model.n_classes < data.n_classes:
        raise CheckpointError(f"the cached FCN {cached.path} has {cached.model.n_classes} classes but {data.name} has "
                         f"{data.n_classes}; delete that file so the FCN is retrained")
    return cached
