"""The resolved configuration of one stage-1 run: one frozen dataclass, built from flat dotted keys.

The same dotted keys ("tokenizer.codebook_size") are used by the CLI overrides, the search spaces
and the MLflow params, so what MLflow records is exactly what ran.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from datasets.augment import parse_aug_set
from models.ssl import SSL_METHODS
from models.ssl_vqvae import REFERENCE_WEIGHT, SSL_LATENTS
from models.tokenizer import TokenizerConfig, min_length
from results.errors import ConfigError, UsageError

PRECISIONS = ("auto", "fp32", "bf16")


def check_device_name(name: str) -> None:
    """auto, cpu, cuda or cuda:N: a typo fails when the config is made, not inside a trial."""
    head, _, index = name.partition(":")
    if head not in ("auto", "cpu", "cuda") or (index and (head != "cuda" or not index.isdigit())):
        raise ValueError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N")


@dataclass(frozen=True)
class Stage2Config:
    """Stage 2 of a trial: the MaskGIT prior over its tokens and the generative metrics."""
    width: int = 256               # prior transformer width (reference 256)
    depth: int = 4                 # prior blocks (reference 4)
    heads: int = 2                 # attention heads (reference 2)
    dropout: float = 0.1
    p_uncond: float = 0.2          # label dropped to the null class in training: classifier-free guidance
    epochs: int = 100              # prior epochs (reference ~1000)
    eval_every: int = 10           # epochs between validation losses and checkpoints (the last always)
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 1e-5
    steps: int = 10                # iterative decoding steps T
    guidance_scale: float = 1.0    # 1: plain conditional sampling, 0: unconditional
    choice_temperature: float = 4.0
    min_generate: int = 1000       # generated series = max(min_generate, test size); FID, IS and CAS share them
    gen_batch: int = 500           # series sampled and decoded at once
    n_boot: int = 200              # FID bootstrap resamples (0: no interval)
    is_splits: int = 10
    fcn_epochs: int = 500          # the dataset's FCN (cached; every setting below is part of its cache key)
    fcn_patience: int = 100
    fcn_batch_size: int = 16
    fcn_lr: float = 1e-3
    fcn_val_fraction: float = 0.2  # of the archive's train split, for the FCN's early stopping
    fcn_seed: int = 0              # fixed, not the trial's seed: one FCN per dataset for every trial
    cas_epochs: int = 100          # the CAS FCN, trained on generated series only
    cas_patience: int = 20
    cas_batch_size: int = 64
    cas_val_fraction: float = 0.2  # generated series held out for the CAS FCN's early stopping
    seed: int = 0                  # prior init, shuffling, masking, labels and sampling
    device: str = "auto"           # auto | cpu | cuda
    precision: str = "auto"        # prior training: auto (bf16 autocast on a GPU, fp32 on the CPU) | fp32 | bf16

    def __post_init__(self):
        check_device_name(self.device)
        if self.precision not in PRECISIONS:
            raise ValueError(f"unknown precision {self.precision!r}; use {', '.join(PRECISIONS)}")
        if min(self.epochs, self.eval_every, self.steps, self.gen_batch, self.is_splits, self.fcn_epochs,
               self.fcn_patience, self.cas_epochs, self.cas_patience) < 1:
            raise ValueError("stage-2 epochs, eval_every, steps, gen_batch, is_splits and the FCN/CAS epochs and "
                             "patience must be at least 1")
        if min(self.batch_size, self.fcn_batch_size, self.cas_batch_size, self.min_generate) < 2:
            raise ValueError("stage-2 batch sizes and min_generate must be at least 2")
        if self.width % self.heads or min(self.width, self.depth, self.heads) < 1:
            raise ValueError(f"prior width {self.width} must be a positive multiple of heads {self.heads}, depth >= 1")
        fractions = (self.fcn_val_fraction, self.cas_val_fraction)
        if not (0.0 <= self.p_uncond <= 1.0 and all(0.0 < f < 1.0 for f in fractions)):
            raise ValueError("p_uncond must lie in [0, 1] and fcn_val_fraction / cas_val_fraction in (0, 1)")


@dataclass(frozen=True)
class TrainConfig:
    dataset: str = "GunPoint"
    ssl_method: str = "none"         # none | barlowtwins | vibcreg
    aug_set: str = "warp"            # warp | slice | gauss | "+"-joined combos; unused by none
    aug_recon_weight: float = REFERENCE_WEIGHT  # weight of the augmented branch's reconstruction loss
    seed: int = 0
    epochs: int = 100
    eval_every: int = 10             # epochs between validation evaluations (the last epoch always evaluates)
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 1e-3
    proj_dim: int = 4096             # SSL projector width (reference 4096)
    ssl_latent: str = "z_q"          # clean-view latent of the SSL loss: z_q (quantized) | z (before quantization)
    val_fraction: float = 0.0        # > 0: a validation split held out of training (selection is cross-validated)
    nan_policy: str = "resample"     # how NaN padding of variable-length series is handled
    device: str = "auto"             # auto | cpu | cuda
    precision: str = "auto"          # training steps: auto (bf16 autocast on a GPU, fp32 on the CPU) | fp32 | bf16
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    stage2: Stage2Config = field(default_factory=Stage2Config)

    def __post_init__(self):
        if self.ssl_method not in SSL_METHODS:
            raise ValueError(f"unknown ssl_method {self.ssl_method!r}; choose one of {', '.join(SSL_METHODS)}")
        if self.ssl_method != "none":
            parse_aug_set(self.aug_set)          # raises with the valid names
        if self.epochs < 1 or self.eval_every < 1 or self.batch_size < 2:
            raise ValueError("epochs and eval_every must be at least 1 and batch_size at least 2")
        if not (self.lr > 0 and self.weight_decay >= 0 and self.aug_recon_weight >= 0 and self.proj_dim >= 1):
            raise ValueError(f"lr must be > 0 and weight_decay, aug_recon_weight >= 0, proj_dim >= 1; got lr={self.lr}, "
                             f"weight_decay={self.weight_decay}, aug_recon_weight={self.aug_recon_weight}, "
                             f"proj_dim={self.proj_dim}")
        if self.ssl_latent not in SSL_LATENTS:
            raise ValueError(f"unknown ssl_latent {self.ssl_latent!r}; use z_q (quantized) or z (before quantization)")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f"val_fraction must lie in [0, 1), got {self.val_fraction}")
        check_device_name(self.device)
        if self.precision not in PRECISIONS:
            raise ValueError(f"unknown precision {self.precision!r}; use {', '.join(PRECISIONS)}")


def to_flat_dict(cfg: Any, prefix: str = "") -> dict[str, Any]:
    """{"tokenizer.n_fft": 8, ...}: nested dataclasses flattened with dotted keys."""
    flat = {}
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if dataclasses.is_dataclass(value):
            flat.update(to_flat_dict(value, f"{prefix}{f.name}."))
        else:
            flat[f"{prefix}{f.name}"] = value
    return flat


def from_flat_dict(values: dict[str, Any], base: Any = None) -> TrainConfig:
    """Build a config from dotted keys over `base` (default: TrainConfig()); unknown keys and values that
    fail the dataclasses' checks raise ConfigError."""
    base = base if base is not None else TrainConfig()
    known = to_flat_dict(base)
    unknown = sorted(k for k in values if k not in known)
    if unknown:
        raise ConfigError(f"unknown config key(s) {', '.join(unknown)}; known keys: {', '.join(known)}")
    try:
        return _replace(base, values)
    except ValueError as err:      # a dataclass's own check (TrainConfig, TokenizerConfig, Stage2Config)
        raise ConfigError(str(err)) from None


def _replace(cfg: Any, values: dict[str, Any]) -> Any:
    top, nested = {}, {}
    for key, value in values.items():
        head, _, rest = key.partition(".")
        if rest:
            nested.setdefault(head, {})[rest] = value
        else:
            top[key] = _coerce(getattr(cfg, key), value, key)
    for head, sub in nested.items():
        top[head] = _replace(getattr(cfg, head), sub)
    return dataclasses.replace(cfg, **top)


def _coerce(current: Any, value: Any, key: str) -> Any:
    """Cast CLI strings and numpy scalars to the field's type (bool before int: bool is an int)."""
    kind = type(current)
    try:
        if kind is bool and isinstance(value, str):
            return value.lower() in ("1", "true", "yes")
        return kind(value) if kind in (bool, int, float, str) else value
    except (TypeError, ValueError):
        raise ConfigError(f"config key {key} expects {kind.__name__}, got {value!r}") from None


def stage2_config(values: dict[str, Any] | None = None, base: Stage2Config | None = None) -> Stage2Config:
    """Flat keys ("epochs": 200, "guidance_scale": "2") over `base`; unknown keys are an error."""
    return from_flat_dict(values or {}, base=base or Stage2Config())


def parse_overrides(pairs: list[str]) -> dict[str, str]:
    """["tokenizer.codebook_size=64", ...] -> {"tokenizer.codebook_size": "64"}."""
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UsageError(f"--set expects KEY=VALUE, got {pair!r} (for example --set tokenizer.codebook_size=64)")
        out[key.strip()] = value.strip()
    return out


def check_trainable(data, cfg) -> None:
    """A dataset a trial can train and select on, else one line: series long enough for the tokenizer's STFT,
    and some class with two training series (the cross-validated probe, the search's objective, holds out
    only series whose class keeps another one in training: with none, every objective is NaN)."""
    if data.length < min_length(cfg.tokenizer):
        raise UsageError(f"{data.name} has series of length {data.length}, shorter than the tokenizer's minimum "
                         f"{min_length(cfg.tokenizer)} (tokenizer.n_fft {cfg.tokenizer.n_fft}); drop the dataset "
                         f"or lower tokenizer.n_fft")
    counts = np.unique(np.asarray(data.y_train), return_counts=True)[1]
    if not len(counts) or counts.max() < 2:
        raise UsageError(f"{data.name}: every class has a single training series, so the cross-validated probe "
                         f"(the search's objective) is undefined; drop it from --datasets")
