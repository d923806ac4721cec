"""Contexts that change how a module runs and restore it afterwards.

Evaluation must change no model state: a module switched to eval mode and never back would train
its next epoch without dropout or with frozen BatchNorm, and a caller cannot see that it happened.
"""
from __future__ import annotations

import contextlib

from torch import nn


@contextlib.contextmanager
def eval_mode(module: nn.Module):
    """Switch a module to eval mode and restore every submodule's previous mode afterwards."""
    modes = {m: m.training for m in module.modules()}
    module.eval()
    try:
        yield module
    finally:
        for m, training in modes.items():
            m.training = training


@contextlib.contextmanager
def frozen_bn_stats(module: nn.Module):
    """BatchNorm layers keep normalising with batch statistics but leave their buffers unchanged.

    momentum 0 makes the running update `running = 1 * running + 0 * batch`; the batch counter,
    which still ticks, and the momenta are restored afterwards.
    """
    bns = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [(m.momentum, None if m.num_batches_tracked is None else m.num_batches_tracked.clone()) for m in bns]
    for m in bns:
        m.momentum = 0.0
    try:
        yield module
    finally:
        for m, (momentum, count) in zip(bns, saved):
            m.momentum = momentum
            if count is not None:
                m.num_batches_tracked.copy_(count)
