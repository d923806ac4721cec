import pytest
import torch
import torch.nn.functional as F
from einops import rearrange

from models.quantizer import VectorQuantizer, nearest_code, perplexity




def make(**kw) -> VectorQuantizer:
    torch.manual_seed(0)
    return VectorQuantizer(**{"codebook_size": 16, "dim": 8, **kw})


def buffers(q: VectorQuantizer) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in q.named_buffers()}


def test_eval_output_is_codebook_lookup_of_indices():
    q = make().eval()
    z = torch.randn(4, 8, 3, 5)
    out = q(z)
    assert out.z_q.shape == z.shape and out.indices.shape == (4, 3, 5) and out.indices.dtype == torch.int64
    assert torch.equal(out.z_q, rearrange(q.codebook[out.indices], "b h w d -> b d h w"))


def test_indices_are_l2_nearest_codes():
    q = make().eval()
    z = torch.randn(6, 8, 7)   # any number of spatial axes
    idx = q(z).indices
    flat = rearrange(z, "b d n -> (b n) d")
    assert torch.equal(idx.flatten(), torch.cdist(flat, q.codebook).argmin(1))
    assert torch.equal(nearest_code(flat, q.codebook), idx.flatten())


def test_eval_mode_never_updates_buffers():
    q = make().eval()
    before = buffers(q)
    for _ in range(3):
        q(torch.randn(4, 8, 2, 3))
    assert all(torch.equal(before[k], v) for k, v in q.named_buffers())


def test_train_mode_updates_ema_buffers():
    q = make().train()
    before = buffers(q)
    q(torch.randn(4, 8, 2, 3))
    assert all(not torch.equal(before[k], v) for k, v in q.named_buffers())


def test_zero_decay_moves_used_codes_to_their_cluster_means():
    q = make(ema_decay=0.0).train()
    z = torch.randn(32, 8, 4)
    idx = q(z).indices.flatten()
    flat = rearrange(z, "b d n -> (b n) d")
    for k in idx.unique():
        torch.testing.assert_close(q.codebook[k], flat[idx == k].mean(0), rtol=1e-3, atol=1e-3)


def test_unused_codes_keep_their_value_after_an_update():
    """Counts start at one, so a code unused in the first batch is not blown up by the smoothing."""
    q = make().train()
    init = q.codebook.clone()
    z = q.codebook[:1].reshape(1, 8, 1).repeat(4, 1, 5) + 0.01 * torch.randn(4, 8, 5)   # all near code 0
    q(z)
    torch.testing.assert_close(q.codebook[1:], init[1:], rtol=1e-3, atol=1e-3)


def test_straight_through_gradient_and_commitment_loss():
    q = make(commitment_weight=0.25).train()
    z = torch.randn(2, 8, 3, 3, requires_grad=True)
    out = q(z)
    out.z_q.sum().backward()
    assert torch.equal(z.grad, torch.ones_like(z))
    codes = rearrange(q.codebook[out.indices], "b h w d -> b d h w")   # eval lookup, codebook after the update
    z2 = z.detach().clone().requires_grad_()
    out2 = q.eval()(z2)
    torch.testing.assert_close(out2.commitment_loss, 0.25 * F.mse_loss(z2, codes.detach()))
    out2.commitment_loss.backward()
    assert z2.grad.abs().sum() > 0 and not q.codebook.requires_grad


def test_perplexity_bounds():
    assert perplexity(torch.zeros(10, dtype=torch.long), 16).item() == pytest.approx(1.0)
    assert perplexity(torch.arange(16), 16).item() == pytest.approx(16.0, rel=1e-5)


def test_dead_code_restart_uses_batch_vectors():
    q = make(dead_code_threshold=2.0).train()   # above the initial count of one: restart at once
    z = q.codebook[:1].reshape(1, 8, 1).repeat(4, 1, 5) + 0.01 * torch.randn(4, 8, 5)   # all near code 0
    q(z)
    flat = rearrange(z, "b d n -> (b n) d")
    assert all((flat == q.codebook[k]).all(1).any() for k in range(1, 16))   # the 15 unused codes
    torch.testing.assert_close(q.embed_sum / q.cluster_size.unsqueeze(1), q.codebook, rtol=1e-3, atol=1e-3)


def test_default_never_restarts():
    q = make().train()
    z = q.codebook[:1].reshape(1, 8, 1).repeat(4, 1, 5) + 0.01 * torch.randn(4, 8, 5)
    init = q.codebook.clone()
    for _ in range(10):
        q(z)
    flat = rearrange(z, "b d n -> (b n) d")
    assert not any((flat == q.codebook[k]).all(1).any() for k in range(1, 16))
    assert torch.allclose(q.codebook[1:], init[1:], rtol=1e-2, atol=1e-2)


def test_bad_input_raises_one_line():
    with pytest.raises(ValueError, match="expects 8 channels") as err:
        make()(torch.randn(2, 4, 3))
    assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match="ema_decay"):
        VectorQuantizer(4, 2, ema_decay=1.0)
