import numpy as np
import pytest
import torch

from evaluation.probes import linear_probes
from evaluation.tokens import codebook_redundancy, eval_mode, evaluate_split
from models.tokenizer import Tokenizer, TokenizerConfig


def _state(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def test_evaluating_changes_no_parameter_and_no_buffer():
    """The reference evaluated in training mode: BatchNorm statistics and the EMA codebook moved."""
    torch.manual_seed(0)
    tok = Tokenizer(64, TokenizerConfig(hidden=16, code_dim=8, n_res_blocks=1)).train()
    before = _state(tok)
    evaluate_split(tok, torch.randn(20, 1, 64) * 3 + 1, batch_size=7)
    after = _state(tok)
    assert before.keys() == after.keys()
    for k in before:
        assert torch.equal(before[k], after[k]), k
    assert tok.training, "evaluation must restore the previous mode"


def test_the_leak_check_can_fail():
    """Same forward passes in training mode do change the buffers, so the test above is not vacuous."""
    torch.manual_seed(0)
    tok = Tokenizer(64, TokenizerConfig(hidden=16, code_dim=8, n_res_blocks=1)).train()
    before = _state(tok)
    with torch.no_grad():
        tok(torch.randn(20, 1, 64) * 3 + 1)
    assert any(not torch.equal(before[k], v) for k, v in tok.state_dict().items())


def test_eval_mode_restores_mixed_modes():
    net = torch.nn.Sequential(torch.nn.BatchNorm1d(2), torch.nn.Dropout())
    net.train()
    net[1].eval()
    with eval_mode(net):
        assert not any(m.training for m in net.modules())
    assert net.training and net[0].training and not net[1].training


def test_split_statistics_cover_the_whole_split():
    torch.manual_seed(0)
    tok = Tokenizer(64, TokenizerConfig(hidden=16, code_dim=8, n_res_blocks=1))
    x = torch.randn(23, 1, 64)
    a, b = evaluate_split(tok, x, batch_size=5), evaluate_split(tok, x, batch_size=23)
    assert a.features.shape == (23, 8)
    assert a.recon_loss == pytest.approx(b.recon_loss, rel=1e-5)
    assert a.perplexity == pytest.approx(b.perplexity, rel=1e-5)
    h, w = tok.token_shape
    assert a.code_counts.sum() == 23 * h * w
    assert 0 < a.usage <= 1 and 1 <= a.perplexity <= tok.cfg.codebook_size


def test_codebook_redundancy_bounds():
    assert codebook_redundancy(torch.eye(6)) < 0.25
    row = torch.randn(1, 5)
    assert codebook_redundancy(torch.cat([row, 2 * row, row + 1])) == pytest.approx(1.0, abs=1e-5)


def test_linear_probes_separate_separable_classes():
    rng = np.random.default_rng(0)
    f = np.concatenate([rng.normal(-2, 1, (30, 4)), rng.normal(2, 1, (30, 4))])
    y = np.repeat([0, 1], 30)
    acc = linear_probes(f[::2], y[::2], f[1::2], y[1::2])
    assert acc["svm_acc"] > 0.9 and acc["knn_acc"] > 0.9
    shuffled = linear_probes(f[::2], rng.permutation(y[::2]), f[1::2], y[1::2])
    assert shuffled["svm_acc"] < acc["svm_acc"]


def test_probe_needs_two_classes():
    with pytest.raises(ValueError, match="two classes"):
        linear_probes(np.zeros((4, 2)), np.zeros(4), np.zeros((2, 2)), np.zeros(2))
