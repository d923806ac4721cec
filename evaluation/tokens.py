"""Stage-1 evaluation over a whole split: reconstruction, codebook statistics and probe features.

Everything runs under `eval_mode`, so evaluating never changes BatchNorm statistics or the EMA
codebook (the reference implementation evaluated in training mode and leaked eval data into both).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from models.modes import eval_mode


@dataclass(frozen=True)
class SplitEval:
    features: np.ndarray     # (n, d) average-pooled z_q, the probes' input
    recon_loss: float        # time-domain MSE over every value of the split
    perplexity: float        # exp(entropy) of code usage over the whole split
    usage: float             # fraction of codes used at least once
    code_counts: np.ndarray  # (K,)


def codebook_redundancy(codebook: torch.Tensor) -> float:
    """Mean absolute off-diagonal correlation between codes (K, d): 0 = diverse, 1 = duplicated codes."""
    corr = torch.corrcoef(codebook.float())
    k = corr.shape[0]
    off = corr[~torch.eye(k, dtype=torch.bool, device=corr.device)]
    return float(off.abs().nan_to_num(0.0).mean())


@torch.no_grad()
def evaluate_split(tokenizer: nn.Module, x: torch.Tensor, batch_size: int = 512) -> SplitEval:
    """Encode, quantize and reconstruct a whole split x: (n, c, l) in eval mode."""
    device = next(tokenizer.parameters()).device
    feats, sq_err, counts = [], 0.0, torch.zeros(tokenizer.codebook.shape[0], device=device)
    with eval_mode(tokenizer):
        for xb in torch.split(x, batch_size):
            xb = xb.to(device, non_blocking=True)
            out = tokenizer(xb)
            feats.append(out.z_q.float().mean(dim=(2, 3)).cpu())   # (b, d)
            sq_err += float(F.mse_loss(out.x_hat.float(), xb.float(), reduction="sum"))
            counts += torch.bincount(out.indices.flatten(), minlength=counts.numel())
    p = counts / counts.sum()
    entropy = -(p[p > 0] * p[p > 0].log()).sum()
    return SplitEval(features=torch.cat(feats).numpy(), recon_loss=sq_err / x.numel(),
                     perplexity=math.exp(float(entropy)), usage=float((counts > 0).float().mean()),
                     code_counts=counts.cpu().numpy())
