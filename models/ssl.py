"""SSL branch of the SSL-VQ-VAE: pooling, projector, IterNorm and the Barlow Twins / VIbCReg losses.

The maths are module-level pure functions; the nn.Modules hold parameters and buffers only.
Losses run in float32 even under autocast: they are sums of many squares, and for b < d they use
||a^T b||_F^2 = <a a^T, b b^T>_F, which avoids the (d, d) matrix (d = 4096, b ~ 128: ~30x fewer
flops) but subtracts large sums.
"""

import functools
import math

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

__all__ = [
    "SSL_METHODS",
    "LOSS_WEIGHTS",
    "pool",
    "standardise",
    "barlow_twins_loss",
    "invariance_loss",
    "variance_loss",
    "covariance_loss",
    "vibcreg_loss",
    "newton_inverse_sqrt",
    "IterNorm",
    "Projector",
    "SSLHead",
]

SSL_METHODS = ("none", "barlowtwins", "vibcreg")
LOSS_WEIGHTS = {"barlowtwins": 1.0, "vibcreg": 0.01}  # as the reference SSL-VQ-VAE config


def pool(z: Tensor) -> Tensor:
    """Global average and max over the token grid. z: (b, d, h, w) -> (b, 2d)."""
    if z.ndim != 4:
        raise ValueError(f"pool expects z of shape (batch, dim, height, width), got {tuple(z.shape)}")
    z = z.flatten(2)  # (b, d, h*w)
    return torch.cat([z.mean(dim=2), z.amax(dim=2)], dim=1)


def _float32(loss):
    """Evaluate a two-view loss in float32 with autocast off (see the module docstring)."""

    @functools.wraps(loss)
    def wrapper(z1: Tensor, z2: Tensor, *args, **kwargs) -> Tensor:
        if z1.ndim != 2 or z1.shape != z2.shape:
            shapes = f"{tuple(z1.shape)} and {tuple(z2.shape)}"
            raise ValueError(f"SSL losses expect two (batch, dim) tensors of one shape, got {shapes}")
        with torch.autocast(z1.device.type, enabled=False):
            return loss(z1.float(), z2.float(), *args, **kwargs)

    return wrapper


def _cross_sq_sum(a: Tensor, b: Tensor) -> Tensor:
    """||a^T b||_F^2 for a, b: (n, d), through the smaller of the (n, n) and (d, d) Gram matrices."""
    if a.shape[0] < a.shape[1]:
        return ((a @ a.T) * (b @ b.T)).sum()
    return (a.T @ b).pow(2).sum()


def standardise(z: Tensor, eps: float = 1e-5) -> Tensor:
    """Zero mean, unit variance per feature over the batch, as BatchNorm1d(affine=False) in training."""
    return (z - z.mean(dim=0)) / torch.sqrt(z.var(dim=0, unbiased=False) + eps)


@_float32
def barlow_twins_loss(z1: Tensor, z2: Tensor, lambd: float = 0.005) -> Tensor:
    """Zbontar et al. 2021: sum (1 - c_ii)^2 + lambd * sum_{i != j} c_ij^2, divided by d as the reference.

    c = standardise(z1)^T standardise(z2) / b is the (d, d) cross-correlation; z1, z2: (b, d).
    """
    b, d = z1.shape
    a, c = standardise(z1), standardise(z2)
    on_diag = (a * c).sum(dim=0) / b  # (d,)
    off_diag = _cross_sq_sum(a, c) / b**2 - on_diag.pow(2).sum()
    return ((1 - on_diag).pow(2).sum() + lambd * off_diag) / d


def invariance_loss(z1: Tensor, z2: Tensor) -> Tensor:
    return F.mse_loss(z1, z2)


def variance_loss(z: Tensor, gamma: float = 1.0, eps: float = 1e-4) -> Tensor:
    """Hinge on each feature's batch std: keeps features from collapsing to a constant. z: (b, d)."""
    return F.relu(gamma - torch.sqrt(z.var(dim=0) + eps)).mean()


def covariance_loss(z: Tensor) -> Tensor:
    """VIbCReg's decorrelation: mean squared off-diagonal of the feature correlation matrix. z: (b, d)."""
    d = z.shape[1]
    unit = F.normalize(z - z.mean(dim=0), dim=0)  # unit-norm columns, (b, d)
    diag = unit.pow(2).sum(dim=0)  # diagonal of unit^T unit: 1, or 0 for a constant feature
    return (_cross_sq_sum(unit, unit) - diag.pow(2).sum()) / d**2


@_float32
def vibcreg_loss(
    z1: Tensor, z2: Tensor, sim_weight: float = 25.0, var_weight: float = 25.0, cov_weight: float = 100.0
) -> Tensor:
    """Lee & Aune 2021 (VIbCReg): invariance + variance hinge + correlation decorrelation, both views."""
    return (
        sim_weight * invariance_loss(z1, z2)
        + var_weight * (variance_loss(z1) + variance_loss(z2))
        + cov_weight * (covariance_loss(z1) + covariance_loss(z2))
    )


def newton_inverse_sqrt(cov: Tensor, iterations: int) -> Tensor:
    """Approximate cov^{-1/2} with Newton's iterations on the trace-normalised matrix. cov: (g, c, c)."""
    eye = torch.eye(cov.shape[-1], dtype=cov.dtype, device=cov.device).expand_as(cov)
    trace = cov.diagonal(dim1=-2, dim2=-1).sum(dim=-1)[:, None, None]  # (g, 1, 1)
    cov_n = cov / trace  # eigenvalues in (0, 1]: the iterations converge
    p = eye
    for _ in range(iterations):
        p = 1.5 * p - 0.5 * (p @ p @ p) @ cov_n
    return p / trace.sqrt()


class IterNorm(nn.Module):
    """Group whitening by Newton's iterations (Huang et al. 2019), as VIbCReg's last projector layer.

    Features are split into groups of consecutive channels; each group is whitened with its own batch
    covariance in training (running mean and whitening matrix updated) and with the running ones in eval.
    """

    def __init__(
        self,
        num_features: int,
        num_groups: int = 64,
        iterations: int = 5,
        eps: float = 1e-5,
        momentum: float = 0.1,
        affine: bool = True,
    ):
        super().__init__()
        group_size = math.ceil(num_features / num_groups)
        while num_features % group_size:
            group_size //= 2
        self.num_features, self.group_size = num_features, group_size
        self.num_groups = num_features // group_size
        self.iterations, self.eps, self.momentum = iterations, eps, momentum
        self.weight = nn.Parameter(torch.ones(num_features)) if affine else None
        self.bias = nn.Parameter(torch.zeros(num_features)) if affine else None
        self.register_buffer("running_mean", torch.zeros(self.num_groups, group_size, 1))
        self.register_buffer("running_whitening", torch.eye(group_size).repeat(self.num_groups, 1, 1))

    def forward(self, x: Tensor) -> Tensor:  # (b, num_features) -> (b, num_features)
        if x.ndim != 2 or x.shape[1] != self.num_features:
            d = self.num_features
            raise ValueError(f"IterNorm({d}) expects input of shape (batch, {d}), got {tuple(x.shape)}")
        with torch.autocast(x.device.type, enabled=False):
            xg = rearrange(x.float(), "b (g c) -> g c b", g=self.num_groups)
            if self.training:
                mean = xg.mean(dim=2, keepdim=True)  # (g, c, 1)
                xc = xg - mean
                eye = torch.eye(self.group_size, dtype=xc.dtype, device=xc.device)
                whitening = newton_inverse_sqrt(self.eps * eye + xc @ xc.transpose(1, 2) / xg.shape[2], self.iterations)
                with torch.no_grad():
                    self.running_mean.lerp_(mean, self.momentum)
                    self.running_whitening.lerp_(whitening, self.momentum)
            else:
                xc, whitening = xg - self.running_mean, self.running_whitening
            out = rearrange(whitening @ xc, "g c b -> b (g c)").to(x.dtype)
        return out if self.weight is None else out * self.weight + self.bias

    def extra_repr(self) -> str:
        return f"{self.num_features}, num_groups={self.num_groups}, iterations={self.iterations}"


def _per_view(module: nn.Module, x: Tensor, n_views: int) -> Tensor:
    """Apply a batch-statistics module to each view's rows separately. x: (n_views * b, d)."""
    return module(x) if n_views == 1 else torch.cat([module(part) for part in x.chunk(n_views)])


class Projector(nn.Module):
    """Linear-BN-ReLU, Linear-BN-ReLU, Linear (the reference 4096-4096 projector)."""

    def __init__(self, in_dim: int, hidden_dim: int = 4096, out_dim: int = 4096):
        super().__init__()
        self.linear1, self.bn1 = nn.Linear(in_dim, hidden_dim), nn.BatchNorm1d(hidden_dim)
        self.linear2, self.bn2 = nn.Linear(hidden_dim, hidden_dim), nn.BatchNorm1d(hidden_dim)
        self.linear3 = nn.Linear(hidden_dim, out_dim)

    def forward(self, h: Tensor, n_views: int = 1) -> Tensor:  # (n_views * b, in_dim) -> (n_views * b, out_dim)
        """Several views stacked along the batch share each matmul; BatchNorm sees one view at a time,
        so statistics match projecting each view on its own."""
        h = F.relu(_per_view(self.bn1, self.linear1(h), n_views))
        h = F.relu(_per_view(self.bn2, self.linear2(h), n_views))
        return self.linear3(h)


class SSLHead(nn.Module):
    """Projector (+ IterNorm for VIbCReg) and the weighted SSL loss between two pooled views."""

    def __init__(self, method: str, in_dim: int, proj_dim: int = 4096):
        super().__init__()
        if method not in SSL_METHODS[1:]:
            hint = f"valid: {', '.join(SSL_METHODS)}"
            if method == "none":
                hint = "'none' means no SSL branch: build no head"
            raise ValueError(f"SSLHead needs ssl_method 'barlowtwins' or 'vibcreg', got {method!r}; {hint}")
        self.method = method
        self.projector = Projector(in_dim, proj_dim, proj_dim)
        self.whiten = IterNorm(proj_dim) if method == "vibcreg" else None

    def forward(self, h1: Tensor, h2: Tensor) -> Tensor:
        """h1, h2: (b, in_dim) pooled features of the two views -> scalar loss, already weighted."""
        if h1.shape != h2.shape:
            raise ValueError(f"SSLHead expects two views of one shape, got {tuple(h1.shape)} and {tuple(h2.shape)}")
        z = self.projector(torch.cat([h1, h2]), n_views=2)  # (2b, proj_dim)
        if self.whiten is not None:
            z = _per_view(self.whiten, z, 2)
        z1, z2 = z.chunk(2)
        loss = barlow_twins_loss(z1, z2) if self.method == "barlowtwins" else vibcreg_loss(z1, z2)
        return LOSS_WEIGHTS[self.method] * loss
