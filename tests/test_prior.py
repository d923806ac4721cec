import math

import pytest
import torch

from models.prior import MaskGIT, cosine_mask_schedule, guided_logits

K, N, CLASSES = 8, 6, 2




def tiny(**kwargs) -> MaskGIT:
    torch.manual_seed(0)
    return MaskGIT(K, N, CLASSES, **{"width": 32, "depth": 1, "heads": 2, "dropout": 0.0, **kwargs})


@pytest.fixture(scope="module")
def overfit():
    """One fixed sequence per class; the prior learns them and the per-step losses."""
    model = tiny(p_uncond=0.2)
    seqs = torch.tensor([[0, 1, 2, 3, 4, 5], [7, 6, 5, 4, 3, 2]])
    tokens, y = seqs.repeat(16, 1), torch.tensor([0, 1]).repeat(16)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(0)
    losses = []
    model.train()
    for _ in range(150):
        loss = model.loss(tokens, y, generator=gen)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return model, seqs, losses


def test_cosine_schedule_endpoints_and_monotone():
    assert cosine_mask_schedule(0.0) == 1.0 and cosine_mask_schedule(1.0) == 0.0
    r = torch.linspace(0, 1, 11)
    g = cosine_mask_schedule(r)
    assert g[0] == 1.0 and g[-1] == 0.0 and bool((g[1:] <= g[:-1]).all())
    assert cosine_mask_schedule(0.5) == pytest.approx(math.cos(math.pi / 4))


def test_forward_shape():
    model = tiny().eval()
    tokens = torch.randint(0, K + 1, (3, N))
    assert model(tokens, torch.tensor([0, 1, CLASSES])).shape == (3, N, K)


def test_loss_decreases_on_tiny_overfit_set(overfit):
    _, _, losses = overfit
    first, last = sum(losses[:10]) / 10, sum(losses[-10:]) / 10
    assert last < 0.3 * first


def test_conditional_samples_follow_their_class(overfit):
    model, seqs, _ = overfit
    y = torch.tensor([0, 1, 0, 1])
    out = model.sample(y, steps=6, generator=torch.Generator().manual_seed(1))
    assert (out == seqs[y]).float().mean() > 0.9


def test_decoding_leaves_no_mask_and_valid_indices():
    model = tiny().train()
    for steps in (1, 3, 10, 20):  # more steps than tokens included
        out = model.sample(torch.tensor([0, 1, 1, CLASSES]), steps=steps, generator=torch.Generator().manual_seed(0))
        assert out.shape == (4, N) and out.dtype == torch.long
        assert bool((out >= 0).all() and (out < K).all())
    assert model.training  # mode restored after sampling in eval mode


def test_sampling_is_reproducible_with_a_generator():
    model = tiny()
    y = torch.tensor([0, 1, 0])
    a = model.sample(y, guidance_scale=2.0, generator=torch.Generator().manual_seed(5))
    b = model.sample(y, guidance_scale=2.0, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a, b)


def test_guidance_scale_zero_equals_unconditional(overfit):
    model = overfit[0]
    y = torch.tensor([0, 1, 0, 1, 1])
    guided = model.sample(y, guidance_scale=0.0, generator=torch.Generator().manual_seed(3))
    uncond = model.sample(torch.full_like(y, model.null_class), generator=torch.Generator().manual_seed(3))
    assert torch.equal(guided, uncond)


def test_guided_logits_mix_cond_and_uncond(overfit):
    model = overfit[0].eval()
    tokens = torch.tensor([[K, 1, K, 3, K, K], [K, K, K, K, K, K]])
    y = torch.tensor([0, 1])
    cond = model(tokens, y)
    uncond = model(tokens, torch.full_like(y, model.null_class))
    for s in (0.0, 1.0, 2.5):
        assert torch.allclose(model._logits(tokens, y, s), uncond + s * (cond - uncond), atol=1e-5)
    assert torch.allclose(guided_logits(cond, uncond, 1.0), cond, atol=1e-6)
    assert torch.equal(guided_logits(cond, uncond, 0.0), uncond)


def test_label_dropping_only_in_training():
    model = tiny(p_uncond=1.0).eval()
    tokens, y = torch.randint(0, K, (4, N)), torch.tensor([0, 1, 0, 1])
    a = model.loss(tokens, y, generator=torch.Generator().manual_seed(0))
    b = model.loss(tokens, y, generator=torch.Generator().manual_seed(0))
    assert torch.equal(a, b)
    model.train()  # p_uncond=1: every label is the null class, so labels cannot matter
    c = model.loss(tokens, y, generator=torch.Generator().manual_seed(0))
    d = model.loss(tokens, 1 - y, generator=torch.Generator().manual_seed(0))
    assert torch.equal(c, d)


def test_bad_input_errors():
    model = tiny()
    with pytest.raises(ValueError, match=r"token indices must lie in \[0, 8\)"):
        model.loss(torch.full((2, N), K), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="flatten"):
        model.loss(torch.zeros(2, 2, 3, dtype=torch.long), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match=r"labels must be a 1-D tensor in \[0, 2\)"):
        model.loss(torch.zeros(2, N, dtype=torch.long), torch.tensor([0, CLASSES]))
    with pytest.raises(ValueError, match=r"in \[0, 3\)"):
        model.sample(torch.tensor([CLASSES + 1]))
    with pytest.raises(ValueError, match="divisible by heads"):
        MaskGIT(K, N, CLASSES, width=30, heads=4)
    with pytest.raises(ValueError, match="steps"):
        model.sample(torch.tensor([0]), steps=0)
