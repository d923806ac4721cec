"""MaskGIT prior over stage-1 token indices, class-conditional with classifier-free guidance.

Chang et al., "MaskGIT: Masked Generative Image Transformer", CVPR 2022, as used for time series by
TimeVQVAE (Lee et al. 2023). One architecture serves every tokenizer, so stage-2 differences come
from the tokens alone. Tokens are flat: a tokenizer's (b, h, w) indices are passed as (b, h * w).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from models.modes import eval_mode


def cosine_mask_schedule(r):
    """Fraction of tokens masked at progress r in [0, 1]: 1 at r=0 (all masked), 0 at r=1 (none)."""
    # exact 0 at r >= 1: cos(pi / 2) is 6e-17 in floating point, and ceil(n * 6e-17) would mask a token
    if isinstance(r, torch.Tensor):
        return torch.where(r >= 1, 0.0, torch.cos(r * math.pi / 2).clamp(0.0, 1.0))
    return 0.0 if r >= 1 else min(1.0, max(0.0, math.cos(r * math.pi / 2)))


def guided_logits(cond: torch.Tensor, uncond: torch.Tensor, scale: float) -> torch.Tensor:
    """Classifier-free guidance: scale 1 is the conditional model, 0 the unconditional one."""
    return uncond + scale * (cond - uncond)


def _uniform(shape, generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
    """U[0, 1) drawn on the generator's device (CPU or GPU), then moved to where the work runs."""
    gen_device = generator.device if generator is not None else device
    return torch.rand(shape, generator=generator, device=gen_device).to(device)


def _gumbel(shape, generator, device) -> torch.Tensor:
    u = _uniform(shape, generator, device).clamp_(1e-20, 1.0 - 1e-7)
    return -torch.log(-torch.log(u))


class Block(nn.Module):
    """Pre-norm transformer block with bidirectional attention."""

    def __init__(self, width: int, heads: int, dropout: float):
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.norm1, self.norm2 = nn.RMSNorm(width), nn.RMSNorm(width)
        self.qkv = nn.Linear(width, 3 * width, bias=False)
        self.proj = nn.Linear(width, width, bias=False)
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width),
                                 nn.Dropout(dropout))
        self.resid_drop = nn.Dropout(dropout)

    def attend(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = rearrange(self.qkv(x), "b n (three h d) -> three b h n d", three=3, h=self.heads)
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0)
        return self.resid_drop(self.proj(rearrange(y, "b h n d -> b n (h d)")))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attend(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class MaskGIT(nn.Module):
    def __init__(self, codebook_size: int, n_tokens: int, n_classes: int, width: int = 256, depth: int = 4,
                 heads: int = 2, dropout: float = 0.1, p_uncond: float = 0.2):
        super().__init__()
        if min(codebook_size, n_tokens, n_classes, depth) < 1 or width % heads:
            raise ValueError(f"MaskGIT needs positive sizes and width divisible by heads, got codebook_size="
                             f"{codebook_size}, n_tokens={n_tokens}, n_classes={n_classes}, width={width}, "
                             f"heads={heads}, depth={depth}")
        if not 0.0 <= p_uncond <= 1.0:
            raise ValueError(f"p_uncond must lie in [0, 1], got {p_uncond}")
        self.kwargs = dict(codebook_size=codebook_size, n_tokens=n_tokens, n_classes=n_classes, width=width,
                           depth=depth, heads=heads, dropout=dropout, p_uncond=p_uncond)
        self.codebook_size, self.n_tokens, self.n_classes, self.p_uncond = codebook_size, n_tokens, n_classes, p_uncond
        self.mask_id = codebook_size          # the extra input token
        self.null_class = n_classes           # the label of unconditional generation
        self.tok_emb = nn.Embedding(codebook_size + 1, width)
        self.cls_emb = nn.Embedding(n_classes + 1, width)
        self.pos_emb = nn.Parameter(torch.zeros(1, n_tokens + 1, width))  # +1: the class token
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(Block(width, heads, dropout) for _ in range(depth))
        self.norm = nn.RMSNorm(width)
        self.head = nn.Linear(width, codebook_size)
        self.apply(self._init)
        nn.init.normal_(self.pos_emb, std=0.02)

    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, std=0.02)
        if isinstance(m, nn.Linear) and m.bias is not None:
            nn.init.zeros_(m.bias)

    def forward(self, tokens: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """tokens: (b, n) in [0, codebook_size] (codebook_size = masked); y: (b,) -> logits (b, n, K)."""
        x = torch.cat([self.cls_emb(y)[:, None], self.tok_emb(tokens)], dim=1) + self.pos_emb  # (b, 1 + n, w)
        x = self.drop(x)
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x[:, 1:]))  # (b, n, K)

    def _check(self, y: torch.Tensor, tokens: torch.Tensor | None = None, allow_null: bool = False) -> None:
        top = self.n_classes + int(allow_null)
        if y.ndim != 1 or (y.numel() and (int(y.min()) < 0 or int(y.max()) >= top)):
            raise ValueError(f"labels must be a 1-D tensor in [0, {top}), got shape {tuple(y.shape)}")
        if tokens is not None:
            if tokens.shape != (len(y), self.n_tokens):
                raise ValueError(f"tokens must have shape (b, {self.n_tokens}) with b = len(labels) = {len(y)}, "
                                 f"got {tuple(tokens.shape)}; flatten (b, h, w) indices to (b, h * w)")
            if int(tokens.min()) < 0 or int(tokens.max()) >= self.codebook_size:
                raise ValueError(f"token indices must lie in [0, {self.codebook_size}), got "
                                 f"[{int(tokens.min())}, {int(tokens.max())}]")

    def loss(self, tokens: torch.Tensor, y: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Cross-entropy on the masked positions; the masked count follows the cosine schedule.

        In training mode the label is replaced by the null class with probability p_uncond.
        """
        self._check(y, tokens)
        tokens, y = tokens.long(), y.long()
        b, n = tokens.shape
        device = tokens.device
        r = _uniform((b,), generator, device)
        n_masked = torch.ceil(cosine_mask_schedule(r) * n).clamp(1, n)                      # (b,)
        ranks = _uniform((b, n), generator, device).argsort(dim=1).argsort(dim=1)            # random order
        masked = ranks < n_masked[:, None]                                                    # (b, n)
        if self.training and self.p_uncond > 0:
            y = torch.where(_uniform((b,), generator, device) < self.p_uncond, self.null_class, y)
        logits = self(torch.where(masked, self.mask_id, tokens), y)
        return F.cross_entropy(logits[masked], tokens[masked])

    def _logits(self, tokens: torch.Tensor, y: torch.Tensor, scale: float) -> torch.Tensor:
        if scale == 1.0:
            return self(tokens, y)
        null = torch.full_like(y, self.null_class)
        if scale == 0.0:
            return self(tokens, null)
        cond, uncond = self(torch.cat([tokens, tokens]), torch.cat([y, null])).chunk(2)
        return guided_logits(cond, uncond, scale)

    @torch.no_grad()
    def sample(self, y: torch.Tensor, steps: int = 10, guidance_scale: float = 1.0, choice_temperature: float = 4.0,
               generator: torch.Generator | None = None) -> torch.Tensor:
        """Iterative decoding from all-masked tokens -> (b, n) code indices.

        y: (b,) labels; the null class (= n_classes) asks for unconditional samples. At each step every
        masked position draws a token; the least confident of them (log-probability plus Gumbel noise
        annealed by choice_temperature * (1 - progress)) are masked again, as many as the cosine
        schedule says, so the final step leaves none.
        """
        if steps < 1:
            raise ValueError(f"steps must be >= 1, got {steps}")
        device = self.pos_emb.device
        y = torch.as_tensor(y, device=device).long()
        self._check(y, allow_null=True)
        with eval_mode(self):
            b, n = len(y), self.n_tokens
            tokens = torch.full((b, n), self.mask_id, dtype=torch.long, device=device)
            for step in range(steps):
                unknown = tokens == self.mask_id                                                       # (b, n)
                probs = F.softmax(self._logits(tokens, y, guidance_scale).float(), dim=-1)             # (b, n, K)
                u = _uniform((b, n, 1), generator, device)
                drawn = torch.searchsorted(probs.cumsum(-1), u).squeeze(-1).clamp_(max=self.codebook_size - 1)
                drawn = torch.where(unknown, drawn, tokens)
                ratio = (step + 1) / steps
                n_unknown = int(unknown[0].sum())  # same for every row: all start fully masked, masks shrink in lockstep
                n_mask = min(math.floor(n * cosine_mask_schedule(ratio)), n_unknown - 1)
                if n_mask <= 0:
                    tokens = drawn
                    break
                conf = torch.log(probs.gather(-1, drawn[..., None]).squeeze(-1).clamp_min(1e-30))
                conf = conf + choice_temperature * (1.0 - ratio) * _gumbel((b, n), generator, device)
                conf = conf.masked_fill(~unknown, float("inf"))  # decided tokens stay decided
                remask = conf.topk(n_mask, dim=1, largest=False).indices
                tokens = drawn.scatter(1, remask, self.mask_id)
        return tokens
