"""Stage-1 tokenizer: STFT -> 2-D conv encoder -> vector quantizer -> decoder -> ISTFT (TimeVQVAE).

The series is turned into a (frequency x time) map with real and imaginary parts as channels; the
encoder halves the time axis only, until the map is `tokens_wide_min..tokens_wide_max` tokens wide,
and keeps every frequency row, so a series of length l becomes (n_fft/2 + 1) x w tokens.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from models.quantizer import QuantizerOutput, VectorQuantizer


@dataclass(frozen=True)
class TokenizerConfig:
    n_fft: int = 8                  # STFT window; hop n_fft // 4 and f = n_fft // 2 + 1 rows, as the reference
    hidden: int = 64                # conv width of encoder and decoder at the token grid
    hidden_min: int = 16            # channels halve per time doubling away from the token grid, down to this
                                    # (TimeVQVAE widens as it downsamples too); 2.3-3.2x faster than a flat 64
    n_res_blocks: int = 4           # residual blocks in the encoder and in the decoder
    tokens_wide_min: int = 8        # the time axis is halved until it is at most tokens_wide_max wide;
    tokens_wide_max: int = 16       # series shorter than min_length(cfg) cannot reach tokens_wide_min
    codebook_size: int = 32
    code_dim: int = 64
    ema_decay: float = 0.9
    commitment_weight: float = 1.0
    dead_code_threshold: float = 0.0  # > 0: restart codes whose EMA count falls below it (0 = reference)
    in_channels: int = 1
    stft_normalized: bool = False   # the reference's STFT is unnormalised; True scales the STFT loss by 1 / n_fft

    def __post_init__(self):
        _check_config(self)      # a bad shape fails where the config is made, before any training starts


@dataclass(frozen=True)
class TokenizerOutput:
    x_hat: Tensor               # (b, c, l) reconstruction
    z: Tensor                   # (b, d, h, w) encoder output
    z_q: Tensor                 # (b, d, h, w) quantized (straight-through)
    indices: Tensor             # (b, h, w) tokens
    losses: dict[str, Tensor]   # recon_time, recon_stft, commitment
    perplexity: Tensor          # scalar

    @property
    def loss(self) -> Tensor:
        return sum(self.losses.values())


def hop_length(n_fft: int) -> int:
    return n_fft // 4


def _at_least_float32(t: Tensor) -> Tensor:
    return t.to(torch.promote_types(t.dtype, torch.float32))


def time_to_timefreq(x: Tensor, n_fft: int, normalized: bool = False) -> Tensor:
    """x: (b, c, l) -> (b, 2c, f, t): real and imaginary parts of a Hann STFT as channels (unnormalised,
    as the reference; normalized=True scales by 1 / sqrt(n_fft), which shrinks the STFT loss term).
    Both transforms run in float32 (or float64) with autocast off: the STFT loss compares their outputs."""
    b, x = x.shape[0], _at_least_float32(x)
    with torch.autocast(x.device.type, enabled=False):
        spec = torch.stft(rearrange(x, "b c l -> (b c) l"), n_fft, hop_length=hop_length(n_fft),
                          window=torch.hann_window(n_fft, device=x.device, dtype=x.dtype),
                          normalized=normalized, return_complex=True)        # (b c, f, t)
    return rearrange(torch.view_as_real(spec), "(b c) f t z -> b (c z) f t", b=b)


def timefreq_to_time(u: Tensor, n_fft: int, length: int, normalized: bool = False) -> Tensor:
    """u: (b, 2c, f, t) -> x: (b, c, length), the inverse of time_to_timefreq; a bf16 u (a decoder output
    under autocast) is cast up first: there is no bf16 complex FFT."""
    b, u = u.shape[0], _at_least_float32(u)
    with torch.autocast(u.device.type, enabled=False):
        spec = torch.view_as_complex(rearrange(u, "b (c z) f t -> (b c) f t z", z=2).contiguous())
        x = torch.istft(spec, n_fft, hop_length=hop_length(n_fft),
                        window=torch.hann_window(n_fft, device=u.device, dtype=u.dtype),
                        normalized=normalized, length=length)                 # (b c, l)
    return rearrange(x, "(b c) l -> b c l", b=b)


def stft_shape(length: int, n_fft: int) -> tuple[int, int]:
    """(f, t) of time_to_timefreq for a series of `length` (centred frames)."""
    return n_fft // 2 + 1, length // hop_length(n_fft) + 1


def n_downsamples(t: int, cfg: TokenizerConfig) -> int:
    """How many stride-2 time halvings bring t frames to at most tokens_wide_max."""
    k = 0
    while t >> k > cfg.tokens_wide_max:
        k += 1
    return k


def min_length(cfg: TokenizerConfig) -> int:
    """Shortest series with at least tokens_wide_min STFT frames (and long enough for reflect padding)."""
    return max(hop_length(cfg.n_fft) * (cfg.tokens_wide_min - 1), cfg.n_fft // 2 + 1)


def _check_config(cfg: TokenizerConfig) -> None:
    if cfg.n_fft < 4:
        raise ValueError(f"tokenizer n_fft must be at least 4 (the hop is n_fft // 4), got {cfg.n_fft}")
    if min(cfg.hidden, cfg.hidden_min, cfg.n_res_blocks + 1, cfg.codebook_size, cfg.code_dim, cfg.in_channels) < 1:
        raise ValueError(f"tokenizer sizes must be positive (n_res_blocks >= 0), got {cfg}")
    if cfg.tokens_wide_min < 1 or cfg.tokens_wide_max < 2 * cfg.tokens_wide_min - 1:
        raise ValueError(f"tokenizer needs 1 <= tokens_wide_min and tokens_wide_max >= 2 * tokens_wide_min - 1 "
                         f"(halving must land in the range), got {cfg.tokens_wide_min}..{cfg.tokens_wide_max}")
    if not (0.0 <= cfg.ema_decay < 1.0 and cfg.commitment_weight >= 0.0 and cfg.dead_code_threshold >= 0.0):
        raise ValueError(f"tokenizer needs 0 <= ema_decay < 1 and commitment_weight, dead_code_threshold >= 0, got "
                         f"{cfg.ema_decay}, {cfg.commitment_weight}, {cfg.dead_code_threshold}")


class ResBlock(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.body = nn.Sequential(nn.LeakyReLU(), nn.Conv2d(dim, dim, 3, padding=1), nn.BatchNorm2d(dim),
                                  nn.LeakyReLU(), nn.Conv2d(dim, dim, 1))

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


def conv_bn(conv: nn.Module, dim: int) -> nn.Sequential:
    return nn.Sequential(conv, nn.BatchNorm2d(dim), nn.LeakyReLU())


def res_stack(dim: int, n: int) -> list[nn.Module]:
    return [m for _ in range(n) for m in (ResBlock(dim), nn.BatchNorm2d(dim))]


class Tokenizer(nn.Module):
    """STFT VQ-VAE for series of one fixed `length`; forward(x (b, c, l)) -> TokenizerOutput."""

    def __init__(self, length: int, cfg: TokenizerConfig = TokenizerConfig()):
        super().__init__()
        _check_config(cfg)
        if length < min_length(cfg):
            raise ValueError(f"series length {length} is below the tokenizer minimum {min_length(cfg)} for n_fft="
                             f"{cfg.n_fft} and tokens_wide_min={cfg.tokens_wide_min}; lower them or use longer series")
        self.length, self.cfg = length, cfg
        self.stft_hw = stft_shape(length, cfg.n_fft)                      # (f, t)
        k, c2, hid = n_downsamples(self.stft_hw[1], cfg), 2 * cfg.in_channels, cfg.hidden
        self.token_shape = (self.stft_hw[0], self.stft_hw[1] >> k)         # (h, w)
        width = lambda j: max(hid >> j, min(cfg.hidden_min, hid))   # channels j halvings away from the tokens
        down = lambda j: conv_bn(nn.Conv2d(c2 if j == k else width(j), width(j - 1), (3, 4), stride=(1, 2),
                                           padding=(1, 1), padding_mode="replicate"), width(j - 1))
        up = lambda j: conv_bn(nn.ConvTranspose2d(width(j), width(j + 1), (3, 4), stride=(1, 2), padding=(1, 1)),
                               width(j + 1))                                # exactly doubles w
        stem = [down(j) for j in range(k, 0, -1)] or [conv_bn(nn.Conv2d(c2, hid, 3, padding=1), hid)]
        self.encoder = nn.Sequential(*stem, *res_stack(hid, cfg.n_res_blocks),
                                     nn.Conv2d(hid, cfg.code_dim, 1), nn.BatchNorm2d(cfg.code_dim))
        self.quantizer = VectorQuantizer(cfg.codebook_size, cfg.code_dim, cfg.ema_decay, cfg.commitment_weight,
                                         dead_code_threshold=cfg.dead_code_threshold)
        self.decoder = nn.Sequential(nn.Conv2d(cfg.code_dim, hid, 1), *res_stack(hid, cfg.n_res_blocks),
                                     *[up(j) for j in range(k)])
        self.head = nn.Conv2d(width(k), c2, 3, padding=1)   # after resizing to (f, t): sees full resolution

    @property
    def codebook(self) -> Tensor:
        return self.quantizer.codebook   # (K, d)

    def check_input(self, x: Tensor) -> None:
        if x.ndim != 3 or x.shape[1] != self.cfg.in_channels or x.shape[2] != self.length:
            raise ValueError(f"tokenizer expects x of shape (b, {self.cfg.in_channels}, {self.length}), "
                             f"got {tuple(x.shape)}")

    def encode_timefreq(self, u: Tensor) -> Tensor:
        return self.encoder(u)   # (b, 2c, f, t) -> (b, d, h, w)

    def encode(self, x: Tensor) -> Tensor:
        """x: (b, c, l) -> z: (b, d, h, w)."""
        self.check_input(x)
        return self.encode_timefreq(time_to_timefreq(x, self.cfg.n_fft, self.cfg.stft_normalized))

    def quantize(self, z: Tensor) -> QuantizerOutput:
        return self.quantizer(z)

    def decode_timefreq(self, z: Tensor) -> Tensor:
        """z: (b, d, h, w) -> u_hat: (b, 2c, f, t)."""
        h = self.decoder(z)
        if h.shape[-2:] != self.stft_hw:   # w * 2^k falls short of t by < 2^k frames
            h = F.interpolate(h, size=self.stft_hw, mode="bilinear", align_corners=False)
        return self.head(h)

    def decode(self, z: Tensor) -> Tensor:
        """z or z_q: (b, d, h, w) -> x_hat: (b, c, l)."""
        return timefreq_to_time(self.decode_timefreq(z), self.cfg.n_fft, self.length, self.cfg.stft_normalized)

    def decode_tokens(self, indices: Tensor) -> Tensor:
        """indices: (b, h, w) int -> x_hat: (b, c, l); the stage-2 prior's way back to series."""
        if tuple(indices.shape[1:]) != self.token_shape:
            raise ValueError(f"decode_tokens expects indices of shape (b, {self.token_shape[0]}, "
                             f"{self.token_shape[1]}), got {tuple(indices.shape)}")
        z_q = rearrange(F.embedding(indices, self.codebook), "b h w d -> b d h w")
        return self.decode(z_q)

    def forward(self, x: Tensor) -> TokenizerOutput:
        self.check_input(x)
        u = time_to_timefreq(x, self.cfg.n_fft, self.cfg.stft_normalized)        # (b, 2c, f, t)
        z = self.encode_timefreq(u)                    # (b, d, h, w)
        q = self.quantize(z)
        u_hat = self.decode_timefreq(q.z_q)            # (b, 2c, f, t)
        x_hat = timefreq_to_time(u_hat, self.cfg.n_fft, self.length, self.cfg.stft_normalized)
        losses = {"recon_time": F.mse_loss(x_hat, x), "recon_stft": F.mse_loss(u_hat, u),
                  "commitment": q.commitment_loss}
        return TokenizerOutput(x_hat, z, q.z_q, q.indices, losses, q.perplexity)
