"""Batched time-series augmentations for the SSL branch.

Every function takes a batch x: (b, c, l) and a torch.Generator and gives each sample its own random
parameters. The O(b) parameters are drawn on the generator's device (usually CPU) and moved to x's
device; the O(b*l) work (gathers, noise) runs on x's device with no per-sample Python loop, so the
augmentations keep up with a GPU training step.
"""

import torch
from torch import Tensor

__all__ = [
    "AUG_SETS",
    "AUG_ORDER",
    "amplitude_resize",
    "window_warp",
    "slice_and_shuffle",
    "gaussian_noise",
    "parse_aug_set",
    "augment",
]

AUG_SETS: dict[str, tuple[str, ...]] = {
    "warp": ("window_warp", "amplitude_resize"),
    "slice": ("slice_and_shuffle",),
    "gauss": ("gaussian_noise",),
}
# Combined sets apply in this order: time rearrangements first, then amplitude, noise last.
AUG_ORDER: tuple[str, ...] = ("window_warp", "slice_and_shuffle", "amplitude_resize", "gaussian_noise")


def _check_batch(x: Tensor) -> None:
    if x.ndim != 3 or not x.is_floating_point():
        raise ValueError(
            f"augmentations expect a float tensor of shape (batch, channels, length), got {x.dtype} of shape "
            f"{tuple(x.shape)}; add the missing axes with x[:, None, :]"
        )


def _draw(fn, *shape: int, generator: torch.Generator, like: Tensor, **kwargs) -> Tensor:
    """Draw with `fn` on the generator's device, then move the (small) result to `like`'s device."""
    return fn(*shape, generator=generator, device=generator.device, **kwargs).to(like.device)


def _generator_on(device: torch.device, generator: torch.Generator) -> torch.Generator:
    """A generator on `device` seeded from `generator`, so bulk noise is drawn where x lives."""
    if generator.device == device:
        return generator
    seed = int(torch.randint(2**62, (1,), generator=generator, device=generator.device))
    return torch.Generator(device=device).manual_seed(seed)


def amplitude_resize(x: Tensor, generator: torch.Generator, rate: float = 0.2) -> Tensor:
    """Multiply each sample by its own scalar 1 + N(0, rate). x: (b, c, l)."""
    _check_batch(x)
    scale = 1 + rate * _draw(torch.randn, x.shape[0], generator=generator, like=x)  # (b,)
    return x * scale.to(x.dtype)[:, None, None]


def window_warp(
    x: Tensor,
    generator: torch.Generator,
    window_ratio: float = 0.4,
    min_scale: float = 0.9,
    max_scale: float = 2.0,
) -> Tensor:
    """Stretch a random window by a factor in U(min_scale, max_scale), then resample to length l.

    One source coordinate per output position, linear interpolation between neighbours: the output
    stays inside the input's range and a factor of 1 is the identity. x: (b, c, l).
    """
    _check_batch(x)
    b, c, l = x.shape
    coord = torch.promote_types(x.dtype, torch.float32)  # positions stay exact for half-precision x
    width = min(max(round(window_ratio * l), 1), l)
    start = _draw(torch.randint, l - width + 1, (b, 1), generator=generator, like=x).to(coord)  # (b, 1)
    factor = min_scale + (max_scale - min_scale) * _draw(torch.rand, b, 1, generator=generator, like=x)
    factor = factor.to(coord)  # (b, 1)
    span = (width - 1) * factor  # window's extent in the warped series
    warped_last = (l - 1) + span - (width - 1)  # last coordinate of the warped series, (b, 1)
    steps = torch.arange(l, device=x.device, dtype=coord)[None, :]  # (1, l)
    u = steps * (warped_last / max(l - 1, 1))  # output position -> warped coordinate, (b, l)
    inside = (u - start).clamp(min=0).minimum(span)  # progress through the stretched window
    source = (u - inside * (1 - 1 / factor)).clamp(0, l - 1)  # warped -> source coordinate, (b, l)
    left = source.floor().clamp(max=max(l - 2, 0))
    frac = (source - left).to(x.dtype)[:, None, :]  # (b, 1, l)
    left = left.long()[:, None, :].expand(b, c, l)
    right = (left + 1).clamp(max=l - 1)
    return torch.lerp(x.gather(2, left), x.gather(2, right), frac)


def slice_and_shuffle(x: Tensor, generator: torch.Generator, n_segments: int = 4) -> Tensor:
    """Cut each sample at random points into `n_segments` pieces and concatenate them in a random order.

    The output is a permutation of each sample's time steps (channels move together). x: (b, c, l).
    """
    _check_batch(x)
    b, c, l = x.shape
    cuts = _draw(torch.randint, 1, max(l, 2), (b, n_segments - 1), generator=generator, like=x)
    cuts = cuts.clamp(max=l).sort(dim=1).values
    zero = torch.zeros(b, 1, dtype=torch.long, device=x.device)
    bounds = torch.cat([zero, cuts, zero + l], dim=1)  # (b, n + 1)
    src_start, lengths = bounds[:, :-1], bounds.diff(dim=1)  # (b, n)
    order = _draw(torch.rand, b, n_segments, generator=generator, like=x).argsort(dim=1)  # (b, n)
    out_len = lengths.gather(1, order)
    out_end = out_len.cumsum(dim=1)  # (b, n), ends of the output slots
    steps = torch.arange(l, device=x.device).expand(b, l).contiguous()  # (b, l)
    slot = torch.searchsorted(out_end, steps, right=True)  # output slot of each position, (b, l)
    offset = steps - (out_end - out_len).gather(1, slot)
    index = src_start.gather(1, order.gather(1, slot)) + offset  # (b, l)
    return x.gather(2, index[:, None, :].expand(b, c, l))


def gaussian_noise(x: Tensor, generator: torch.Generator, std: float = 0.1) -> Tensor:
    """Add N(0, std^2) noise to every value (the data are z-normalised). x: (b, c, l).

    std 0.1 is the reference's (variance 0.01). Measured on Mallat, 200 steps, 3 seeds, test SVM at
    0.05 / 0.1: vibcreg+gauss .750 / .812, barlowtwins+gauss .748 / .729 (within its seeds' spread).
    """
    _check_batch(x)
    noise = torch.randn(x.shape, generator=_generator_on(x.device, generator), device=x.device, dtype=x.dtype)
    return x + std * noise


_FUNCTIONS = {
    "amplitude_resize": amplitude_resize,
    "window_warp": window_warp,
    "slice_and_shuffle": slice_and_shuffle,
    "gaussian_noise": gaussian_noise,
}


def parse_aug_set(name: str) -> tuple[str, ...]:
    """'warp+gauss' -> the union of the named sets' augmentations, in AUG_ORDER."""
    parts = [part.strip() for part in str(name).split("+")]
    unknown = [part for part in parts if part not in AUG_SETS]
    if unknown:
        raise ValueError(
            f"unknown augmentation set {unknown[0]!r} in {name!r}; valid names: {', '.join(AUG_SETS)} "
            f"or '+'-joined combinations such as 'warp+gauss'"
        )
    chosen = {aug for part in parts for aug in AUG_SETS[part]}
    return tuple(aug for aug in AUG_ORDER if aug in chosen)


def augment(x: Tensor, aug_set: str, generator: torch.Generator) -> Tensor:
    """Apply the augmentations of `aug_set` (e.g. 'warp', 'slice+gauss') to a batch x: (b, c, l)."""
    _check_batch(x)
    for aug in parse_aug_set(aug_set):
        x = _FUNCTIONS[aug](x, generator)
    return x
