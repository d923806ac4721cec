"""Stage 2 for one trained tokenizer: its prior, class-conditional samples, and FID / IS / CAS.

One FCN per dataset (cached on disk, shared by every trial) extracts the features of FID and the
probabilities of IS; CAS (Ravuri & Vinyals 2019) trains a fresh FCN on generated series only and
scores it on the real test split. The test split is used only for scoring: every model choice (the
CAS FCN's early stopping) uses generated data.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from datasets.ucr import UCRDataset
from evaluation.generative import (FIDResult, class_balanced_labels, fid_with_ci, inception_score,
                                   stratified_holdout)
from models.fcn import FCN, accuracy, as_series_batch, predict
from models.prior import MaskGIT
from models.tokenizer import Tokenizer
from results.contract import (FCN_S, FCN_TEST_ACC, GEN_CAS, GEN_EVAL_S, GEN_FID, GEN_FID_HIGH, GEN_FID_LOW, GEN_IS,
                              GEN_IS_STD, GEN_N_GEN, GEN_N_REAL, GENERATE_S, PRIOR_S, PRIOR_VAL_LOSS, STAGE2_S)
from results.errors import CheckpointError
from tune.config import Stage2Config
from tune.engine.fcn import FCNTrainInfo, fcn_for_dataset, train_fcn
from tune.engine.figures import samples_figure
from tune.engine.loop import OnEpoch, select_device, to_device
from tune.engine.prior_training import decode, masked_loss, tokenize, train_prior
from tune.engine.tokenizer_training import load_tokenizer


@dataclass(frozen=True)
class CASResult:
    accuracy: float      # on the real test split
    n_fit: int           # generated series trained on
    n_val: int           # generated series held out for early stopping
    train_info: FCNTrainInfo


def classification_accuracy_score(x_gen, y_gen, x_test, y_test, *, n_classes: int, val_fraction: float = 0.2,
                                  epochs: int = 100, batch_size: int = 64, lr: float = 1e-3, patience: int = 20,
                                  seed: int = 0, device: str | torch.device = "cpu") -> CASResult:
    """Train an FCN on generated series (n, l) or (n, c, l), select it on a held-out generated part,
    and return its accuracy on the real test split."""
    y_gen = np.asarray(torch.as_tensor(y_gen).cpu())
    fit, val = stratified_holdout(y_gen, val_fraction, seed)
    if len(val) == 0:
        raise ValueError(f"{len(y_gen)} generated series leave no validation part; generate more (>= 1000 advised)")
    x_gen = as_series_batch(x_gen)
    model, info = train_fcn(x_gen[fit], y_gen[fit], x_gen[val], y_gen[val], epochs=epochs, batch_size=batch_size,
                            lr=lr, seed=seed, device=device, n_classes=n_classes, patience=patience)
    acc = accuracy(model, x_test, y_test, batch_size=max(256, batch_size))
    return CASResult(acc, len(fit), len(val), info)


@dataclass(frozen=True)
class GenerativeMetrics:
    fid: FIDResult
    inception_score: float
    inception_std: float
    cas: float
    n_gen: int

    def as_dict(self) -> dict[str, float]:
        """The study's `gen/` metric keys."""
        return {GEN_FID: self.fid.fid, GEN_FID_LOW: self.fid.low, GEN_FID_HIGH: self.fid.high,
                GEN_IS: self.inception_score, GEN_IS_STD: self.inception_std, GEN_CAS: self.cas,
                GEN_N_REAL: float(self.fid.n_real), GEN_N_GEN: float(self.n_gen)}


def evaluate_generation(fcn: FCN, x_gen, y_gen, x_test, y_test, *, n_boot: int = 200, is_splits: int = 10,
                        seed: int = 0, device: str | torch.device = "cpu", cas_kwargs: dict | None = None
                        ) -> GenerativeMetrics:
    """FID (real test vs generated, with a bootstrap CI) and IS from the dataset's FCN (on its own device),
    then CAS (a fresh FCN trained on `device`)."""
    real, fake = predict(fcn, x_test), predict(fcn, x_gen)
    fid = fid_with_ci(real.features, fake.features, n_boot=n_boot, seed=seed)
    is_mean, is_std = inception_score(fake.probs, splits=is_splits)
    cas = classification_accuracy_score(x_gen, y_gen, x_test, y_test, n_classes=fcn.n_classes, seed=seed,
                                        device=device, **(cas_kwargs or {}))
    return GenerativeMetrics(fid, is_mean, is_std, cas.accuracy, len(fake.probs))


def load_tokenizer_for(path: str | Path, data: UCRDataset, device: str = "cpu") -> tuple[Tokenizer, dict]:
    """load_tokenizer, checked against the data it will tokenize -> (Tokenizer, its data block)."""
    tokenizer, trained_on = load_tokenizer(path, device)
    if trained_on["dataset"] != data.name:
        raise CheckpointError(f"tokenizer {path} was trained on {trained_on['dataset']}, not {data.name}; "
                              f"pass that dataset's tokenizer or load {trained_on['dataset']}")
    check_inputs(tokenizer, data)
    return tokenizer, trained_on

def check_inputs(tokenizer: Tokenizer, data: UCRDataset) -> None:
    if tokenizer.length != data.length:
        raise CheckpointError(f"tokenizer takes series of length {tokenizer.length} but {data.name} has length "
                              f"{data.length}; use the tokenizer trained on this dataset")
    missing = np.flatnonzero(np.bincount(data.y_train, minlength=data.n_classes) == 0)
    if len(missing):
        names = [data.classes[c] for c in missing]
        raise CheckpointError(f"class(es) {names} of {data.name} have no train series, so the prior cannot learn "
                              f"them; lower val_fraction or drop those classes")

def generate(prior: MaskGIT, tokenizer: Tokenizer, labels: torch.Tensor, cfg: Stage2Config,
             generator: torch.Generator) -> np.ndarray:
    """Class-conditional series (n, l) for labels (n,), sampled and decoded `gen_batch` at a time."""
    device = prior.pos_emb.device
    out = [decode(tokenizer, prior.sample(to_device(yb, device), steps=cfg.steps, guidance_scale=cfg.guidance_scale,
                                          choice_temperature=cfg.choice_temperature, generator=generator))
           for yb in labels.split(cfg.gen_batch)]
    return torch.cat(out).numpy()

def evaluate_stage2(tokenizer: Tokenizer, data: UCRDataset, cfg: Stage2Config, *, cache_dir: str | Path,
                    on_epoch: OnEpoch | None = None, checkpoint_dir: str | Path | None = None):
    """Prior on the tokenizer's train tokens (validated on the validation tokens), class-conditional samples
    in the train split's proportions, and FID / IS / CAS against the real test split -> (metrics, figure).

    The tokenizer is moved to the config's device; its mode is left as it was (tokenizing and decoding
    run in eval mode).
    """
    t0 = time.perf_counter()
    check_inputs(tokenizer, data)
    device = select_device(cfg.device)
    fcn = fcn_for_dataset(data, cache_dir, cfg)           # before the prior: a bad cache fails fast
    times = {FCN_S: time.perf_counter() - t0}
    tokenizer.to(device)
    val = (tokenize(tokenizer, data.x_val), torch.as_tensor(data.y_val))
    prior = train_prior(tokenize(tokenizer, data.x_train), data.y_train, data.n_classes,
                        tokenizer.cfg.codebook_size, cfg, val=val, on_epoch=on_epoch, checkpoint_dir=checkpoint_dir)
    val_loss = masked_loss(prior, *(to_device(t, device) for t in val), seed=cfg.seed + 1)
    times[PRIOR_S] = time.perf_counter() - t0 - times[FCN_S]

    t1 = time.perf_counter()
    gen = torch.Generator().manual_seed(cfg.seed)
    labels = class_balanced_labels(np.concatenate([data.y_train, data.y_val]),
                                   max(cfg.min_generate, len(data.x_test)), gen)    # the train split's proportions
    x_gen, y_gen = generate(prior, tokenizer, labels, cfg, gen), labels.numpy()
    times[GENERATE_S] = time.perf_counter() - t1

    t1 = time.perf_counter()
    cas = {"epochs": cfg.cas_epochs, "patience": cfg.cas_patience, "batch_size": cfg.cas_batch_size,
           "val_fraction": cfg.cas_val_fraction}
    scores = evaluate_generation(fcn.model, x_gen, y_gen, data.x_test, data.y_test, n_boot=cfg.n_boot,
                                 is_splits=cfg.is_splits, seed=cfg.seed, device=device, cas_kwargs=cas)
    times[GEN_EVAL_S] = time.perf_counter() - t1
    metrics = {**scores.as_dict(), FCN_TEST_ACC: float(fcn.meta["test_acc"]), PRIOR_VAL_LOSS: val_loss,
               **times, STAGE2_S: time.perf_counter() - t0}
    figure = samples_figure(data.x_train, data.y_train, x_gen, y_gen, classes=data.classes,
                            title=f"{data.name}: real vs generated (FID {metrics[GEN_FID]:.2f}, "
                                  f"IS {metrics[GEN_IS]:.2f}, CAS {metrics[GEN_CAS]:.2f})")
    return metrics, figure
