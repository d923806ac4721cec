"""SSL-VQ-VAE: the stage-1 tokenizer plus a self-supervised branch on an augmented view.

x     -> STFT -> encoder -> z     -> quantizer -> z_q -> decoder -> x_hat      (tokenizer loss)
x_aug -> STFT -> encoder -> z_aug (not quantized)     -> decoder -> x_aug_hat  (aug_recon_weight *)
SSL loss between pool(z_q) and pool(z_aug) (Barlow Twins or VIbCReg through models.ssl.SSLHead); with
ssl_latent="z" the clean view enters before quantization, pool(z), as the reference's later code does.

The two views go through the shared encoder in separate passes, as in the reference: the encoder
and decoder use BatchNorm, and one joint batch would normalise the clean view with statistics of
the augmented one, so the clean path would compute a different function in the SSL runs than in
the baseline. The augmented pass also leaves the running statistics alone (see `frozen_bn_stats`):
they are what eval mode, probing and the prior use, and those only ever see clean series. A joint
pass would save nothing on the CPU (the work is in the convolutions, linear in the batch).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor, nn

from models.modes import frozen_bn_stats
from models.ssl import SSL_METHODS, SSLHead, pool
from models.tokenizer import Tokenizer, TokenizerConfig, TokenizerOutput, time_to_timefreq, timefreq_to_time

SSL_LATENTS = ("z_q", "z")   # which clean-view latent the SSL loss sees: quantized (straight-through) or not
REFERENCE_WEIGHT = 0.1       # the reference study's aug_recon_weight: the default, TPE's first point, the fixed
                             # weight of the aug_set and ssl spaces


@dataclass(frozen=True)
class StepOutput:
    loss: Tensor                     # scalar to backpropagate
    terms: dict[str, Tensor]         # the loss's terms as added (aug_recon, ssl weighted), detached scalars
    tokenizer_out: TokenizerOutput   # of the clean view


class SSLVQVAE(nn.Module):
    """forward(x, x_aug) -> StepOutput; ssl_method "none" is the TimeVQVAE baseline and ignores x_aug."""

    def __init__(self, length: int, tokenizer_cfg: TokenizerConfig = TokenizerConfig(), ssl_method: str = "none",
                 aug_recon_weight: float = REFERENCE_WEIGHT, proj_dim: int = 4096, ssl_latent: str = "z_q"):
        super().__init__()
        if ssl_method not in SSL_METHODS:
            raise ValueError(f"unknown ssl_method {ssl_method!r}; choose one of {', '.join(SSL_METHODS)}")
        if ssl_latent not in SSL_LATENTS:
            raise ValueError(f"unknown ssl_latent {ssl_latent!r}; choose one of {', '.join(SSL_LATENTS)}")
        self.ssl_method, self.aug_recon_weight, self.ssl_latent = ssl_method, aug_recon_weight, ssl_latent
        self.tokenizer = Tokenizer(length, tokenizer_cfg)
        self.ssl_head = None if ssl_method == "none" else SSLHead(ssl_method, 2 * tokenizer_cfg.code_dim, proj_dim)

    def forward(self, x: Tensor, x_aug: Tensor | None = None) -> StepOutput:
        """x, x_aug: (b, c, l). Without x_aug the SSL branch is skipped in eval mode (validation)."""
        out = self.tokenizer(x)
        terms = dict(out.losses)
        if self.ssl_head is not None and (x_aug is not None or self.training):
            if x_aug is None:
                raise ValueError(f"ssl_method {self.ssl_method!r} needs the augmented view x_aug in training mode")
            aug_recon, z_aug = self._aug_branch(x_aug)
            terms["aug_recon"] = self.aug_recon_weight * aug_recon
            clean = out.z_q if self.ssl_latent == "z_q" else out.z
            terms["ssl"] = self.ssl_head(pool(clean), pool(z_aug))
        # detached tensors, not floats: reading them would stall every step on a GPU, and training needs only loss
        return StepOutput(sum(terms.values()), {k: v.detach() for k, v in terms.items()}, out)

    def _aug_branch(self, x_aug: Tensor) -> tuple[Tensor, Tensor]:
        """Unweighted time + STFT reconstruction loss of the unquantized augmented view, and z_aug."""
        tok = self.tokenizer
        tok.check_input(x_aug)
        with frozen_bn_stats(tok):
            u = time_to_timefreq(x_aug, tok.cfg.n_fft, tok.cfg.stft_normalized)      # (b, 2c, f, t)
            z_aug = tok.encode_timefreq(u)                   # (b, d, h, w)
            u_hat = tok.decode_timefreq(z_aug)
        x_hat = timefreq_to_time(u_hat, tok.cfg.n_fft, tok.length, tok.cfg.stft_normalized)
        return F.mse_loss(x_hat, x_aug) + F.mse_loss(u_hat, u), z_aug
