import math

import pytest
import torch

from models.modes import frozen_bn_stats
from models.ssl_vqvae import SSLVQVAE
from models.tokenizer import (Tokenizer, TokenizerConfig, min_length, stft_shape, time_to_timefreq,
                              timefreq_to_time)

SMALL = TokenizerConfig(hidden=16, n_res_blocks=1, codebook_size=8, code_dim=8)




def make(length: int, cfg: TokenizerConfig = SMALL) -> Tokenizer:
    torch.manual_seed(0)
    return Tokenizer(length, cfg)


def state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in module.state_dict().items()}


def same_state(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("length", [14, 15, 24, 150, 251, 427])
@pytest.mark.parametrize("channels", [1, 3])
def test_stft_round_trip(length, channels):
    x = torch.randn(4, channels, length)
    u = time_to_timefreq(x, 8)
    assert u.shape == (4, 2 * channels, *stft_shape(length, 8)) == (4, 2 * channels, 5, length // 2 + 1)
    torch.testing.assert_close(timefreq_to_time(u, 8, length), x, atol=1e-5, rtol=0)


def test_stft_channels_are_real_then_imaginary_of_each_input_channel():
    x = torch.randn(2, 2, 40)
    u = time_to_timefreq(x, 8)
    spec = torch.stft(x[:, 1], 8, hop_length=2, window=torch.hann_window(8), normalized=False, return_complex=True)
    torch.testing.assert_close(u[:, 2], spec.real)
    torch.testing.assert_close(u[:, 3], spec.imag)


@pytest.mark.parametrize("length", [14, 15, 24, 33, 150, 251, 427, 500, 1460, 2000])
def test_token_width_in_target_range(length):
    tok = make(length).eval()
    h, w = tok.token_shape
    assert h == 5 and 8 <= w <= 16
    with torch.no_grad():
        assert tok.encode(torch.randn(2, 1, length)).shape == (2, SMALL.code_dim, h, w)


@pytest.mark.parametrize("length", [15, 24, 150, 251, 427])
def test_forward_shapes(length):
    tok = make(length).train()
    x = torch.randn(3, 1, length)
    out = tok(x)
    h, w = tok.token_shape
    assert out.x_hat.shape == x.shape
    assert out.z.shape == out.z_q.shape == (3, SMALL.code_dim, h, w)
    assert out.indices.shape == (3, h, w) and int(out.indices.max()) < SMALL.codebook_size
    assert set(out.losses) == {"recon_time", "recon_stft", "commitment"}
    assert all(torch.isfinite(v) and v.ndim == 0 for v in out.losses.values())
    assert 1.0 <= float(out.perplexity) <= SMALL.codebook_size
    assert tok.codebook.shape == (SMALL.codebook_size, SMALL.code_dim)


def test_tapered_width_keeps_shapes_and_cuts_parameters():
    wide, tapered = make(500, SMALL), make(500, TokenizerConfig(hidden=16, hidden_min=4, n_res_blocks=1, code_dim=8))
    assert tapered.encoder[0][0].out_channels == 4 and tapered.head.in_channels == 4
    assert sum(p.numel() for p in tapered.parameters()) < sum(p.numel() for p in wide.parameters())
    assert tapered(torch.randn(2, 1, 500)).x_hat.shape == (2, 1, 500)


def test_multichannel_forward():
    tok = make(64, TokenizerConfig(hidden=16, n_res_blocks=1, in_channels=2))
    assert tok(torch.randn(2, 2, 64)).x_hat.shape == (2, 2, 64)


def test_too_short_series_raises_with_the_minimum():
    assert min_length(TokenizerConfig()) == 14
    make(14)
    with pytest.raises(ValueError, match=r"below the tokenizer minimum 14") as err:
        Tokenizer(13)
    assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match=r"minimum 30"):
        Tokenizer(29, TokenizerConfig(tokens_wide_min=16, tokens_wide_max=32))


def test_bad_config_and_input_raise():
    with pytest.raises(ValueError, match="tokens_wide_max"):
        Tokenizer(100, TokenizerConfig(tokens_wide_min=8, tokens_wide_max=10))
    with pytest.raises(ValueError, match="sizes must be positive"):
        Tokenizer(100, TokenizerConfig(hidden_min=0))
    with pytest.raises(ValueError, match="n_fft"):
        Tokenizer(100, TokenizerConfig(n_fft=2))
    with pytest.raises(ValueError, match=r"expects x of shape \(b, 1, 40\)"):
        make(40)(torch.randn(2, 1, 41))
    with pytest.raises(ValueError, match="decode_tokens expects"):
        make(40).decode_tokens(torch.zeros(2, 5, 3, dtype=torch.long))


def test_decode_tokens_equals_decode_of_z_q_in_eval():
    tok = make(150).eval()
    with torch.no_grad():
        out = tok(torch.randn(4, 1, 150))
        torch.testing.assert_close(tok.decode_tokens(out.indices), tok.decode(out.z_q), rtol=0, atol=1e-6)
        torch.testing.assert_close(tok.decode(out.z_q), out.x_hat, rtol=0, atol=1e-6)


def test_eval_forward_changes_no_state():
    tok = make(60).eval()
    before = state(tok)
    with torch.no_grad():
        tok(torch.randn(4, 1, 60))
    assert same_state(before, state(tok))


def test_reconstruction_gradient_reaches_encoder_through_quantizer():
    tok = make(60).train()
    tok(torch.randn(4, 1, 60)).losses["recon_time"].backward()
    first_conv = tok.encoder[0][0]
    assert first_conv.weight.grad is not None and first_conv.weight.grad.abs().sum() > 0


def test_overfits_a_tiny_batch():
    torch.manual_seed(0)
    t = torch.linspace(0, 1, 48)
    x = torch.stack([torch.sin(2 * math.pi * f * t + p) for f, p in [(1, 0), (2, 1), (3, 2), (1.5, 3)]])[:, None]
    tok = Tokenizer(48, TokenizerConfig(hidden=32, n_res_blocks=1, codebook_size=16, code_dim=16)).train()
    opt = torch.optim.Adam(tok.parameters(), lr=3e-3)
    with torch.no_grad():
        first = float(tok.eval()(x).losses["recon_time"])
    tok.train()
    for _ in range(80):
        out = tok(x)
        opt.zero_grad()
        out.loss.backward()
        opt.step()
    with torch.no_grad():
        final = float(tok.eval()(x).losses["recon_time"])
    assert final < 0.05 * first


# SSL-VQ-VAE ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("method", ["none", "barlowtwins", "vibcreg"])
def test_ssl_vqvae_losses_finite_and_backward(method):
    torch.manual_seed(0)
    model = SSLVQVAE(60, SMALL, ssl_method=method, aug_recon_weight=0.5, proj_dim=32).train()
    x = torch.randn(8, 1, 60)
    step = model(x, x + 0.1 * torch.randn_like(x))
    expected = {"recon_time", "recon_stft", "commitment"}
    expected |= set() if method == "none" else {"aug_recon", "ssl"}
    assert set(step.terms) == expected
    assert all(v.ndim == 0 and not v.requires_grad and math.isfinite(v) for v in step.terms.values())
    assert float(step.loss.detach()) == pytest.approx(float(sum(step.terms.values())), rel=1e-5)
    step.loss.backward()
    assert all(p.grad is not None for p in model.tokenizer.encoder.parameters())
    if method != "none":
        assert all(p.grad is not None for p in model.ssl_head.parameters())


def test_ssl_latent_chooses_the_clean_views_latent():
    """ssl_latent="z" feeds the SSL head the pre-quantization latent: same weights, same batch, a different loss,
    and the one that a head fed pool(z) by hand computes."""
    from models.ssl import pool

    torch.manual_seed(0)
    model = SSLVQVAE(60, SMALL, ssl_method="barlowtwins", proj_dim=32).train()
    x, x_aug = torch.randn(8, 1, 60), torch.randn(8, 1, 60)
    start = state(model)
    losses = {}
    for latent in ("z_q", "z"):
        model.load_state_dict(start)
        model.ssl_latent = latent
        with torch.no_grad():
            losses[latent] = model(x, x_aug).terms["ssl"]
    assert not torch.allclose(losses["z_q"], losses["z"])
    model.load_state_dict(start)
    with torch.no_grad():
        z = model.tokenizer(x).z
        model.load_state_dict(start)
        _, z_aug = model._aug_branch(x_aug)
        model.load_state_dict(start)
        assert torch.allclose(model.ssl_head(pool(z), pool(z_aug)), losses["z"], rtol=1e-5)
    with pytest.raises(ValueError, match="unknown ssl_latent 'zq'"):
        SSLVQVAE(60, SMALL, ssl_method="vibcreg", ssl_latent="zq")


def test_baseline_ignores_x_aug_and_builds_no_projector():
    model = SSLVQVAE(60, SMALL, ssl_method="none", proj_dim=32).eval()
    assert model.ssl_head is None and not any("ssl_head" in k for k in model.state_dict())
    x = torch.randn(4, 1, 60)
    with torch.no_grad():
        plain, with_aug = model(x).terms, model(x, torch.randn_like(x)).terms
    assert plain.keys() == with_aug.keys() and all(torch.equal(plain[k], with_aug[k]) for k in plain)


def test_augmented_branch_leaves_running_stats_to_the_clean_view():
    torch.manual_seed(0)
    model = SSLVQVAE(60, SMALL, ssl_method="barlowtwins", proj_dim=32).train()
    x = torch.randn(8, 1, 60)
    start = state(model.tokenizer)
    model(x, 3 * x + 1)
    with_aug = state(model.tokenizer)
    model.tokenizer.load_state_dict(start)
    model.tokenizer(x)
    assert same_state(with_aug, state(model.tokenizer))
    momenta = [m.momentum for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    with frozen_bn_stats(model):
        pass
    assert momenta == [m.momentum for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]


def test_ssl_vqvae_errors():
    with pytest.raises(ValueError, match="unknown ssl_method 'simclr'") as err:
        SSLVQVAE(60, SMALL, ssl_method="simclr")
    assert "\n" not in str(err.value)
    model = SSLVQVAE(60, SMALL, ssl_method="vibcreg", proj_dim=32)
    with pytest.raises(ValueError, match="needs the augmented view"):
        model.train()(torch.randn(4, 1, 60))
    with torch.no_grad():
        assert set(model.eval()(torch.randn(4, 1, 60)).terms) == {"recon_time", "recon_stft", "commitment"}
