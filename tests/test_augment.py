import numpy as np
import pytest
import torch

from datasets.augment import (
    AUG_ORDER,
    AUG_SETS,
    amplitude_resize,
    augment,
    gaussian_noise,
    parse_aug_set,
    slice_and_shuffle,
    window_warp,
)

FUNCTIONS = [amplitude_resize, window_warp, slice_and_shuffle, gaussian_noise]
SETS = ["warp", "slice", "gauss", "warp+gauss", "slice+gauss", "warp+slice+gauss"]


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def batch(b: int = 8, c: int = 2, l: int = 64, dtype=torch.float32) -> torch.Tensor:
    return torch.randn(b, c, l, generator=gen(123), dtype=dtype)


@pytest.mark.parametrize("aug_set", SETS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_augment_keeps_shape_dtype_device(aug_set, dtype):
    x = batch(dtype=dtype)
    y = augment(x, aug_set, gen())
    assert y.shape == x.shape and y.dtype == dtype and y.device == x.device
    assert torch.isfinite(y).all()


@pytest.mark.parametrize("aug_set", SETS)
def test_augment_reproducible_with_seed(aug_set):
    x = batch()
    assert torch.equal(augment(x, aug_set, gen(1)), augment(x, aug_set, gen(1)))
    assert not torch.equal(augment(x, aug_set, gen(1)), augment(x, aug_set, gen(2)))


@pytest.mark.parametrize("fn", FUNCTIONS)
def test_samples_get_their_own_parameters(fn):
    x = batch(b=1, c=1).expand(6, 1, 64).contiguous()  # six copies of one series
    y = fn(x, gen())
    assert all(not torch.equal(y[0], y[i]) for i in range(1, 6))


def test_amplitude_resize_is_a_per_sample_scalar_multiple():
    x = batch(b=256, c=3)
    y = amplitude_resize(x, gen())
    ratio = y / x  # (b, c, l)
    assert torch.allclose(ratio, ratio[:, :1, :1].expand_as(ratio), rtol=1e-5)
    assert ratio[:, 0, 0].std().item() == pytest.approx(0.2, rel=0.2)


def test_slice_and_shuffle_permutes_each_sample():
    x = batch(b=32, c=2, l=50)
    y = slice_and_shuffle(x, gen())
    assert torch.equal(y.sort(dim=-1).values, x.sort(dim=-1).values)
    # channels move together: the time index taken from x is one per position, shared by channels
    index = (y[:, :1, :, None] == x[:, :1, None, :]).float().argmax(dim=-1)  # (b, 1, l)
    assert torch.equal(x.gather(2, index.expand_as(x)), y)
    assert not torch.equal(y, x)


def test_tiny_lengths():
    for l in (1, 2, 3):
        x = batch(b=4, c=1, l=l)
        assert torch.equal(slice_and_shuffle(x, gen()).sort(dim=-1).values, x.sort(dim=-1).values)
        y = window_warp(x, gen())
        assert y.shape == x.shape and (y >= x.amin(-1, keepdim=True) - 1e-6).all()


def test_window_warp_with_factor_one_is_identity():
    x = batch()
    assert torch.equal(window_warp(x, gen(), min_scale=1.0, max_scale=1.0), x)


def test_window_warp_stays_in_range():
    x = batch(b=32, l=40)
    y = window_warp(x, gen())
    lo, hi = x.amin(dim=-1, keepdim=True), x.amax(dim=-1, keepdim=True)
    assert (y >= lo - 1e-6).all() and (y <= hi + 1e-6).all()
    assert torch.equal(y[..., 0], x[..., 0]) and torch.allclose(y[..., -1], x[..., -1])


def reference_warp(x: np.ndarray, start: int, width: int, factor: float) -> np.ndarray:
    """Independent piecewise-linear oracle: stretch [start, start + width - 1] by `factor`, resample to l."""
    l = x.shape[-1]
    span = (width - 1) * factor
    warped_knots = [0, start, start + span, l - 1 + span - (width - 1)]
    source_knots = [0, start, start + width - 1, l - 1]
    u = np.linspace(0, warped_knots[-1], l)
    return np.interp(np.interp(u, warped_knots, source_knots), np.arange(l), x)


def test_window_warp_matches_piecewise_linear_oracle():
    l, factor = 30, 1.7
    x = batch(b=16, c=1, l=l)
    y = window_warp(x, gen(), window_ratio=0.4, min_scale=factor, max_scale=factor)
    width = round(0.4 * l)
    for xi, yi in zip(x[:, 0].numpy(), y[:, 0].numpy()):  # some window start must explain each sample
        errors = [np.abs(reference_warp(xi, s, width, factor) - yi).max() for s in range(l - width + 1)]
        assert min(errors) < 1e-5


def test_gaussian_noise_std():
    x = torch.zeros(64, 2, 500)
    noise = gaussian_noise(x, gen())
    assert noise.std().item() == pytest.approx(0.1, rel=0.03)
    assert noise.mean().abs().item() < 0.002


def test_parse_aug_set_union_in_fixed_order():
    assert parse_aug_set("warp") == ("window_warp", "amplitude_resize")
    assert parse_aug_set("gauss+warp") == parse_aug_set("warp+gauss") == (
        "window_warp",
        "amplitude_resize",
        "gaussian_noise",
    )
    assert parse_aug_set("slice+slice") == ("slice_and_shuffle",)
    assert set(AUG_ORDER) == {aug for augs in AUG_SETS.values() for aug in augs}


@pytest.mark.parametrize("name", ["jitter", "warp+", "", "Warp", "warp+jitter"])
def test_unknown_aug_set_raises_one_line(name):
    with pytest.raises(ValueError, match="valid names: warp, slice, gauss") as info:
        augment(batch(), name, gen())
    assert "\n" not in str(info.value)


def test_rejects_non_batch_input():
    with pytest.raises(ValueError, match=r"\(batch, channels, length\)"):
        augment(torch.randn(4, 64), "gauss", gen())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_cpu_generator_drives_cuda_batch():
    x = batch().cuda()
    for aug_set in SETS:
        y = augment(x, aug_set, gen(3))
        assert y.device == x.device and torch.equal(y, augment(x, aug_set, gen(3)))
