import pytest
import torch
import torch.nn.functional as F

from models.ssl import (
    SSL_METHODS,
    IterNorm,
    Projector,
    SSLHead,
    barlow_twins_loss,
    pool,
    vibcreg_loss,
)

# Both regimes of the Gram shortcut: batch < dim and batch >= dim.
SHAPES = [(16, 64), (96, 24)]


def randn(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


# --- Reference code, transcribed -----------------------------------------------------------------
# Barlow Twins, `off_diagonal` and `BarlowTwins.forward` (loss part, one GPU) from
# https://github.com/facebookresearch/barlowtwins/blob/046eec3c7f5c098b42cdf43e04df332957637d6a/main.py
def off_diagonal(x):
    n, m = x.shape
    assert n == m
    return x.flatten()[:-1].view(n - 1, n + 1)[:, 1:].flatten()


def reference_barlow_twins(z1, z2, lambd):
    bn = torch.nn.BatchNorm1d(z1.shape[1], affine=False)  # training mode: batch statistics
    c = bn(z1).T @ bn(z2)
    c.div_(z1.shape[0])
    on_diag = torch.diagonal(c).add_(-1).pow_(2).sum()
    off_diag = off_diagonal(c).pow_(2).sum()
    return on_diag + lambd * off_diag


# VIbCReg losses from the authors' package:
# https://github.com/ML4ITS/vibcreg/blob/d9f62ab374ce44ad3b961588129eddbcd4147aa9/pypilib/vibcreg/losses.py
def vibcreg_cov_loss(z1, z2):
    norm_z1 = z1 - z1.mean(dim=0)
    norm_z2 = z2 - z2.mean(dim=0)
    norm_z1 = F.normalize(norm_z1, p=2, dim=0)
    norm_z2 = F.normalize(norm_z2, p=2, dim=0)
    fxf_cov_z1 = torch.mm(norm_z1.T, norm_z1)
    fxf_cov_z2 = torch.mm(norm_z2.T, norm_z2)
    fxf_cov_z1.fill_diagonal_(0.0)
    fxf_cov_z2.fill_diagonal_(0.0)
    return (fxf_cov_z1**2).mean() + (fxf_cov_z2**2).mean()


def vibcreg_var_loss(z1, z2):
    std_z1 = torch.sqrt(z1.var(dim=0) + 1e-4)
    std_z2 = torch.sqrt(z2.var(dim=0) + 1e-4)
    return torch.mean(torch.relu(1.0 - std_z1)) + torch.mean(torch.relu(1.0 - std_z2))


def reference_vibcreg(z1, z2, lambda_=25.0, mu=25.0, nu=100.0):
    return lambda_ * F.mse_loss(z1, z2) + mu * vibcreg_var_loss(z1, z2) + nu * vibcreg_cov_loss(z1, z2)


# IterNorm forward (`iterative_normalization_py.forward`) as used by the SSL-VQ-VAE reference:
# https://github.com/erlendlokna/Generative-SSL-VQVAE-modelling/blob/1df0ae3167bbe5eb770d3eb9a766bb38d7ededa6/models/ssl/vibcreg.py
def reference_iternorm(X, running_mean, running_wmat, nc, T, eps, momentum, training):
    g = X.size(1) // nc
    x = X.transpose(0, 1).contiguous().view(g, nc, -1)
    _, d, m = x.size()
    if training:
        mean = x.mean(-1, keepdim=True)
        xc = x - mean
        P = [None] * (T + 1)
        P[0] = torch.eye(d).to(X).expand(g, d, d)
        Sigma = torch.baddbmm(beta=eps, input=P[0], alpha=1.0 / m, batch1=xc, batch2=xc.transpose(1, 2))
        rTr = (Sigma * P[0]).sum((1, 2), keepdim=True).reciprocal_()
        Sigma_N = Sigma * rTr
        for k in range(T):
            P[k + 1] = torch.baddbmm(
                beta=1.5, input=P[k], alpha=-0.5, batch1=torch.matrix_power(P[k], 3), batch2=Sigma_N
            )
        wm = P[T].mul_(rTr.sqrt())
        running_mean.copy_(momentum * mean + (1.0 - momentum) * running_mean)
        running_wmat.copy_(momentum * wm + (1.0 - momentum) * running_wmat)
    else:
        xc = x - running_mean
        wm = running_wmat
    xn = wm.matmul(xc)
    return xn.view(X.size(1), X.size(0), *X.size()[2:]).transpose(0, 1).contiguous()


# --- Losses ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("b, d", SHAPES)
def test_barlow_twins_matches_reference(b, d):
    z1, z2 = randn(b, d, seed=1), randn(b, d, seed=2) + 0.5 * randn(b, d, seed=1)
    expected = reference_barlow_twins(z1, z2, lambd=0.005) / d  # SSL-VQ-VAE divides by the projector dim
    assert torch.allclose(barlow_twins_loss(z1, z2, lambd=0.005), expected, rtol=1e-5)


@pytest.mark.parametrize("b, d", SHAPES)
def test_barlow_twins_affine_invariant(b, d):
    z1, z2 = randn(b, d, seed=1), randn(b, d, seed=2)
    loss = barlow_twins_loss(z1, z2)
    assert torch.allclose(barlow_twins_loss(2 * z1 + 4, z2), loss, rtol=1e-4)
    assert torch.allclose(barlow_twins_loss(z1, 3 * z2 - 1), loss, rtol=1e-4)


def test_barlow_twins_near_zero_for_identical_decorrelated_views():
    z = torch.linalg.qr(randn(64, 8)).Q * 8  # orthogonal columns: c is (almost) the identity
    assert barlow_twins_loss(z, z).item() < 1e-3


@pytest.mark.parametrize("b, d", SHAPES)
def test_vibcreg_matches_reference(b, d):
    z1, z2 = randn(b, d, seed=3), 0.3 * randn(b, d, seed=4)
    assert torch.allclose(vibcreg_loss(z1, z2), reference_vibcreg(z1, z2), rtol=1e-5)
    weights = dict(lambda_=1.0, mu=2.0, nu=3.0)
    assert torch.allclose(vibcreg_loss(z1, z2, 1.0, 2.0, 3.0), reference_vibcreg(z1, z2, **weights), rtol=1e-5)


@pytest.mark.parametrize("b, d", SHAPES)
def test_vibcreg_symmetric(b, d):
    z1, z2 = randn(b, d, seed=5), randn(b, d, seed=6)
    assert torch.allclose(vibcreg_loss(z1, z2), vibcreg_loss(z2, z1), rtol=1e-6)


@pytest.mark.parametrize("loss", [barlow_twins_loss, vibcreg_loss])
def test_losses_run_in_float32_under_autocast(loss):
    z1, z2 = randn(16, 64, seed=1), randn(16, 64, seed=2)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        value = loss(z1.bfloat16(), z2.bfloat16())
    assert value.dtype == torch.float32
    assert torch.allclose(value, loss(z1.bfloat16().float(), z2.bfloat16().float()), rtol=1e-5)


def test_losses_reject_mismatched_views():
    with pytest.raises(ValueError, match="one shape"):
        barlow_twins_loss(randn(8, 4), randn(8, 5))
    with pytest.raises(ValueError, match="one shape"):
        vibcreg_loss(randn(8, 4), randn(8))


def test_pool_concatenates_average_and_max():
    z = randn(3, 5, 2, 4)
    out = pool(z)
    assert out.shape == (3, 10)
    assert torch.allclose(out[:, :5], z.mean(dim=(2, 3))) and torch.equal(out[:, 5:], z.amax(dim=(2, 3)))
    with pytest.raises(ValueError, match="height, width"):
        pool(randn(3, 5, 2))


# --- IterNorm -----------------------------------------------------------------------------------------
def correlated(b: int, d: int, seed: int = 0) -> torch.Tensor:
    return randn(b, d, seed=seed) @ (torch.eye(d) + 0.3 * randn(d, d, seed=seed + 1)) + 2.0


def test_iternorm_matches_reference_train_and_eval():
    x, norm = correlated(64, 32), IterNorm(32, num_groups=4)
    mean, wm = norm.running_mean.clone(), norm.running_whitening.clone()
    expected = reference_iternorm(x, mean, wm, norm.group_size, 5, 1e-5, 0.1, True)
    assert torch.allclose(norm(x), expected, atol=1e-5)
    assert torch.allclose(norm.running_mean, mean) and torch.allclose(norm.running_whitening, wm, atol=1e-6)
    y = correlated(16, 32, seed=7)
    expected = reference_iternorm(y, mean, wm, norm.group_size, 5, 1e-5, 0.1, False)
    assert torch.allclose(norm.eval()(y), expected, atol=1e-5)


def test_iternorm_whitens_each_group_in_training():
    x = correlated(1024, 16)
    out = IterNorm(16, num_groups=4).train()(x)
    groups = out.reshape(1024, 4, 4).transpose(0, 1)  # (g, b, c)
    centred = groups - groups.mean(dim=1, keepdim=True)
    cov = centred.transpose(1, 2) @ centred / 1024  # (g, c, c)
    assert torch.allclose(cov, torch.eye(4).expand_as(cov), atol=0.05)


def test_iternorm_eval_uses_running_stats_without_updating():
    norm = IterNorm(16, num_groups=4)
    norm(correlated(256, 16))
    buffers = [buf.clone() for buf in norm.buffers()]
    norm.eval()
    x = correlated(8, 16, seed=3)
    xc = x.reshape(8, 4, 4).permute(1, 2, 0) - norm.running_mean  # (g, c, b)
    expected = (norm.running_whitening @ xc).permute(2, 0, 1).reshape(8, 16)
    assert torch.allclose(norm(x), expected, atol=1e-6)
    assert all(torch.equal(a, b) for a, b in zip(buffers, norm.buffers()))


def test_iternorm_groups_and_shape_check():
    assert (IterNorm(4096).num_groups, IterNorm(4096).group_size) == (64, 64)
    assert IterNorm(48, num_groups=64).num_features == 48
    with pytest.raises(ValueError, match=r"shape \(batch, 16\)"):
        IterNorm(16)(randn(4, 8))


# --- Projector and head ---------------------------------------------------------------------------
def test_batched_projector_equals_two_separate_passes():
    torch.manual_seed(0)
    batched = Projector(12, hidden_dim=32, out_dim=24).train()
    separate = Projector(12, hidden_dim=32, out_dim=24).train()
    separate.load_state_dict(batched.state_dict())
    h1, h2 = randn(10, 12, seed=1), 2 * randn(10, 12, seed=2) + 1
    z1, z2 = batched(torch.cat([h1, h2]), n_views=2).chunk(2)
    assert torch.allclose(z1, separate(h1), atol=1e-5) and torch.allclose(z2, separate(h2), atol=1e-5)
    for (name, a), b in zip(batched.state_dict().items(), separate.state_dict().values()):
        assert torch.allclose(a.float(), b.float(), atol=1e-6), name


@pytest.mark.parametrize("method", ["barlowtwins", "vibcreg"])
def test_ssl_head_gradients_reach_both_views(method):
    head = SSLHead(method, in_dim=12, proj_dim=32).train()
    h1, h2 = randn(16, 12, seed=1).requires_grad_(), randn(16, 12, seed=2).requires_grad_()
    loss = head(h1, h2)
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    assert h1.grad.abs().sum() > 0 and h2.grad.abs().sum() > 0


def test_ssl_head_vibcreg_matches_per_view_pipeline():
    head = SSLHead("vibcreg", in_dim=12, proj_dim=32).train()
    reference = SSLHead("vibcreg", in_dim=12, proj_dim=32).train()
    reference.load_state_dict(head.state_dict())
    h1, h2 = randn(16, 12, seed=1), randn(16, 12, seed=2)
    z1, z2 = (reference.whiten(reference.projector(h)) for h in (h1, h2))
    assert torch.allclose(head(h1, h2), 0.01 * vibcreg_loss(z1, z2), rtol=1e-4)


@pytest.mark.parametrize("method", ["simclr", "none", "BarlowTwins"])
def test_ssl_head_rejects_unknown_method(method):
    with pytest.raises(ValueError, match="barlowtwins") as info:
        SSLHead(method, in_dim=8)
    assert "\n" not in str(info.value)
    assert SSL_METHODS == ("none", "barlowtwins", "vibcreg")
