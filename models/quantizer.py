"""Vector quantizer with an EMA codebook (VQ-VAE v2 style, as in TimeVQVAE).

The codebook is not trained by gradients: in training mode each forward moves every code towards the
mean of the vectors assigned to it (exponential moving averages of counts and sums). Eval mode never
touches the buffers, so evaluating or probing cannot change the tokenizer.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn


@dataclass(frozen=True)
class QuantizerOutput:
    z_q: Tensor              # (b, d, ...) quantized, straight-through gradient to z when z needs grad
    indices: Tensor          # (b, ...) int64 code index of each vector
    commitment_loss: Tensor  # scalar, already multiplied by the commitment weight
    perplexity: Tensor       # scalar, exp(entropy) of this batch's code usage (detached)


def perplexity(indices: Tensor, codebook_size: int) -> Tensor:
    """exp(entropy) of the code histogram: 1 = one code used, K = all codes used equally."""
    flat = indices.flatten()
    # scatter_add, not bincount: bincount reads the largest index back to the host, a sync every step on a GPU
    p = torch.zeros(codebook_size, device=flat.device).scatter_add_(0, flat, torch.ones_like(flat, dtype=torch.float))
    p = p / p.sum()
    return torch.exp(-(p * torch.log(p + 1e-10)).sum())


def nearest_code(flat: Tensor, codebook: Tensor) -> Tensor:
    """Index of the L2-nearest code for each row: flat (n, d), codebook (K, d) -> (n,)."""
    dist = flat.pow(2).sum(1, keepdim=True) - 2 * flat @ codebook.t() + codebook.pow(2).sum(1)  # (n, K)
    return dist.argmin(dim=1)


class VectorQuantizer(nn.Module):
    """Nearest-code quantization of channel-first maps z: (b, d, ...) with an EMA-updated codebook.

    `dead_code_threshold` > 0 re-initialises codes whose EMA usage count fell below it from random
    vectors of the current batch (training mode only); 0 keeps the reference behaviour.
    """

    def __init__(self, codebook_size: int, dim: int, ema_decay: float = 0.9, commitment_weight: float = 1.0,
                 eps: float = 1e-5, dead_code_threshold: float = 0.0):
        super().__init__()
        if not 0.0 <= ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1), got {ema_decay}")
        self.codebook_size, self.dim = codebook_size, dim
        self.ema_decay, self.commitment_weight, self.eps = ema_decay, commitment_weight, eps
        self.dead_code_threshold = dead_code_threshold
        codebook = torch.randn(codebook_size, dim)
        self.register_buffer("codebook", codebook)                  # (K, d)
        # Counts start at one so that embed_sum / cluster_size == codebook before the first update; the
        # reference started them at zero, which blows unused codes up by ~1/eps on the first step.
        self.register_buffer("cluster_size", torch.ones(codebook_size))   # (K,)
        self.register_buffer("embed_sum", codebook.clone())               # (K, d)

    def forward(self, z: Tensor) -> QuantizerOutput:
        """z: (b, d, ...) -> QuantizerOutput with z_q (float32) shaped like z and indices (b, ...).

        Runs in float32 under autocast too: distances by ||a||^2 - 2ab + ||b||^2 cancel badly in bf16 and
        would flip the nearest code, and the EMA buffers stay float32. It is a (n, d) x (d, K) product.
        """
        if z.shape[1] != self.dim:
            raise ValueError(f"quantizer expects {self.dim} channels on axis 1, got shape {tuple(z.shape)}")
        with torch.autocast(z.device.type, enabled=False):
            return self._quantize(z.float())

    def _quantize(self, z: Tensor) -> QuantizerOutput:
        flat = rearrange(z, "b d ... -> (b ...) d")                   # (n, d)
        idx = nearest_code(flat.detach(), self.codebook)            # (n,)
        codes = F.embedding(idx, self.codebook)                     # (n, d)
        if self.training:
            self._ema_update(flat.detach(), idx)
        commitment = self.commitment_weight * F.mse_loss(flat, codes.detach())
        codes = flat + (codes - flat).detach() if flat.requires_grad else codes
        z_q = rearrange(codes, "(b n) d -> b d n", b=z.shape[0]).reshape(z.shape)
        indices = idx.view(z.shape[0], *z.shape[2:])
        return QuantizerOutput(z_q, indices, commitment, perplexity(idx, self.codebook_size).detach())

    @torch.no_grad()
    def _ema_update(self, flat: Tensor, idx: Tensor) -> None:
        onehot = F.one_hot(idx, self.codebook_size).to(flat.dtype)  # (n, K)
        self.cluster_size.lerp_(onehot.sum(0), 1 - self.ema_decay)
        self.embed_sum.lerp_(onehot.t() @ flat, 1 - self.ema_decay)
        n = self.cluster_size.sum()
        smoothed = (self.cluster_size + self.eps) / (n + self.codebook_size * self.eps) * n  # Laplace
        self.codebook.copy_(self.embed_sum / smoothed.unsqueeze(1))
        if self.dead_code_threshold > 0:
            # torch.where instead of `if dead.any()`: no host sync on a GPU.
            dead = (self.cluster_size < self.dead_code_threshold).unsqueeze(1)  # (K, 1)
            picks = flat[torch.randint(0, flat.shape[0], (self.codebook_size,), device=flat.device)]
            self.codebook.copy_(torch.where(dead, picks, self.codebook))
            self.embed_sum.copy_(torch.where(dead, picks, self.embed_sum))
            self.cluster_size.copy_(torch.where(dead.squeeze(1), 1.0, self.cluster_size))
