"""What the whole-archive aug_weight study would cost on H100-class GPUs, worked out on paper from FLOPs.

    python -m benchmarks.archive_cost [--budget standard,paper] [--seeds 3] [--stage2 best|off]

Why: no GPU has run the archive study, so its size in GPU-hours (and the cluster that finishes it
overnight) is an estimate. This script makes the estimate reproducible: it counts, on the CPU, the FLOPs
(torch.utils.flop_counter.FlopCounterMode: matmuls and convolutions only) and the kernels (the aten ops
that reach the dispatcher, views excluded: about one CUDA kernel launch each) of one real training step of
every model the study trains, then multiplies by the steps the budgets give (tune.spaces.BUDGETS,
Budget.epochs) over the 128 datasets of the archive table (datasets.ucr.archive_summary) x the
configurations tune.spaces.search_cells picks for the aug_weight space x seeds.

Stage 1 step: the SSL VQ-VAE of tune.engine.tokenizer_training.build_model on a batch and its augmented
view (datasets.augment.augment), loss, backward, fused AdamW, in float32 (bf16 autocast on a GPU does the
same FLOPs and adds cast kernels: ~+20% kernels, measured once for Barlow Twins at length 512). FLOPs of
a step are a + c x rows (the SSL heads have a per-step part), fitted from batches of 2 and 4 series;
every epoch sees the whole train split, so a trial does epochs x (steps a + n_train c). Costs per series
jump where the tokenizer adds a halving (its token grid is 8..16 wide), so lengths are measured at the
shortest and longest archive length of each depth and interpolated linearly within it; "Vary" lengths
are taken as VARY_LENGTH (512), as --simulate does.
Evaluations: the tokenizer's forward over the train split at each evaluation and over the test split once
(the probes run on the CPU: not counted). Stage 2 (--stage2 best, the default of run_ablation): per dataset
and seed one prior for the baseline and each SSL method (MaskGIT training, sampling max(min_generate,
n_test) series, the CAS FCN), plus the dataset's FCN once; FCN epochs at their caps (patience ignored).

GPU time of a run = max(FLOPs / (989 TFLOP/s dense BF16 x MFU), steps x kernels x LAUNCH_S): the FLOP
time at an assumed MFU (5% and 20%: assumptions, not measurements), or the launch floor of eager PyTorch,
whichever is larger. Packing k runs on one GPU (--gpus-per-trial 1/k) overlaps their launch gaps:
max(FLOP time, launch floor / k). Early stopping is ignored: every number is an upper bound.
"""
from __future__ import annotations

import argparse
import math
import statistics

import numpy as np
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

from datasets.augment import augment
from datasets.ucr import archive_summary
from models.fcn import FCN
from models.tokenizer import TokenizerConfig, n_downsamples, stft_shape
from tune.config import Stage2Config, from_flat_dict
from tune.engine.prior_training import build_prior
from tune.engine.tokenizer_training import build_model, make_optimizer
from tune.spaces import BUDGETS, SPACES, search_cells
from tune.study.simulate import VARY_LENGTH

PEAK = 989e12          # H100 SXM dense BF16 tensor-core peak, FLOP/s
MFUS = (0.05, 0.20)    # assumed model FLOP utilisation: small convnets reach a low share of peak
LAUNCH_S = 5e-6        # seconds per kernel launch in eager PyTorch (host-bound)
PACK = 4               # runs packed on one GPU (--gpus-per-trial 0.25)
HOURS = 10             # "overnight"
BATCH = 128            # TrainConfig.batch_size
BF16_KERNELS = 1029 / 863   # kernels under bf16 autocast / float32 (Barlow Twins + warp, length 512)


class KernelCount(TorchDispatchMode):
    """Aten ops that reach the dispatcher, less views and allocations: ~ one GPU kernel each."""
    FREE = {"detach", "empty", "empty_strided", "lift_fresh", "alias"}

    def __init__(self):
        super().__init__()
        self.n = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.n += not (func.is_view or func.overloadpacket.__name__ in self.FREE)
        return func(*args, **(kwargs or {}))


def measure(fn, warm: bool = True) -> tuple[float, int]:
    """(FLOPs, kernels) of one call of fn, after a warm-up call (optimizer state, lazy buffers)."""
    if warm:
        fn()
    flops, kernels = FlopCounterMode(display=False), KernelCount()
    with flops, kernels:
        fn()
    return float(flops.get_total_flops()), kernels.n


def train_step(opt, loss_fn):
    """One optimizer step on loss_fn(): zero_grad, backward, step, as tune.engine.loop.train_epoch."""
    def step():
        loss = loss_fn()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return step


def stage1_costs(method: str, aug: str, length: int) -> dict[str, float]:
    """A stage-1 step's FLOPs as fixed + per_row x rows, its kernels, and the tokenizer forward per series."""
    cfg = from_flat_dict({"ssl_method": method, "aug_set": aug, "device": "cpu", "precision": "fp32"})
    torch.manual_seed(0)
    model = build_model(cfg, length).train()
    opt, _ = make_optimizer(model, cfg, 10)
    gen = torch.Generator().manual_seed(0)
    out = {}
    for rows in (2, 4):
        x = torch.randn(rows, 1, length)
        xa = lambda: augment(x, aug, gen) if method != "none" else None
        out[rows] = measure(train_step(opt, lambda: model(x, xa()).loss), warm=rows == 2)
    per_row = (out[4][0] - out[2][0]) / 2
    model.eval()
    with torch.no_grad():
        fwd = measure(lambda: model.tokenizer(torch.randn(4, 1, length)), warm=False)[0] / 4
    return {"fixed": out[4][0] - 4 * per_row, "per_row": per_row, "kernels": out[4][1] * BF16_KERNELS,
            "fwd": fwd, "tokens": math.prod(model.tokenizer.token_shape)}


def stage2_costs(length: int, n_tokens: int, s2: Stage2Config) -> dict[str, float]:
    """Per series: MaskGIT training step, MaskGIT forward, FCN training step, FCN forward; and their kernels."""
    torch.manual_seed(0)
    prior = build_prior(n_tokens, 2, 32, s2).train()
    opt = torch.optim.AdamW(prior.parameters())
    tokens, y = torch.randint(32, (8, n_tokens)), torch.tensor([0, 1] * 4)
    p_step, p_kernels = measure(train_step(opt, lambda: prior.loss(tokens, y)))
    with torch.no_grad():
        p_fwd = measure(lambda: prior.eval()(tokens, y))[0]
    fcn = FCN(1, 2).train()
    opt = torch.optim.Adam(fcn.parameters())
    x = torch.randn(8, 1, length)
    f_step, f_kernels = measure(train_step(opt, lambda: torch.nn.functional.cross_entropy(fcn(x), y)))
    with torch.no_grad():
        f_fwd = measure(lambda: fcn.eval()(x))[0]
    k = BF16_KERNELS
    return {"prior_step": p_step / 8, "prior_kernels": p_kernels * k, "prior_fwd": p_fwd / 8,
            "fcn_step": f_step / 8, "fcn_kernels": f_kernels * k, "fcn_fwd": f_fwd / 8}


def depth(length: int) -> int:
    """Stride-2 halvings of the tokenizer at this length: the cost per series is linear in length between jumps."""
    return n_downsamples(stft_shape(length, TokenizerConfig().n_fft)[1], TokenizerConfig())


def grid(lengths: list[int]) -> dict[int, tuple[int, int]]:
    """depth -> (shortest, longest) archive length of that depth: where costs are measured."""
    out = {}
    for L in lengths:
        lo, hi = out.get(depth(L), (L, L))
        out[depth(L)] = (min(lo, L), max(hi, L))
    return out


def interp(table: dict[int, dict], bounds: dict[int, tuple[int, int]], length: int) -> dict[str, float]:
    """Costs at `length`: linear between the measured lengths of its depth."""
    lo, hi = bounds[depth(length)]
    return {k: float(np.interp(length, [lo, hi], [table[lo][k], table[hi][k]])) for k in table[lo]}


def gpu_s(flops: float, launches: float, mfu: float, pack: int, launch_s: float) -> float:
    return max(flops / (PEAK * mfu), launches * launch_s / pack)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--budget", default="standard,paper")
    p.add_argument("--seeds", default="3", help="comma-separated seed counts (e.g. 3,4)")
    p.add_argument("--stage2", default="best", choices=["best", "off"])
    p.add_argument("--launch-us", type=float, default=LAUNCH_S * 1e6, help="microseconds per kernel launch (%(default)s)")
    args = p.parse_args()
    torch.set_num_threads(1)
    launch_s = args.launch_us * 1e-6

    table = archive_summary()
    shapes = [(r.Name, int(r.Train), int(r.Test),
               VARY_LENGTH if str(r.Length).strip() == "Vary" else int(r.Length)) for r in table.itertuples()]
    cells = search_cells(SPACES["aug_weight"], BUDGETS["standard"].num_samples)   # num_samples 16 in both budgets
    configs = [(c.fixed["ssl_method"], c.fixed.get("aug_set", "none"), c.quota) for c in cells]
    print(f"aug_weight: {sum(q for *_, q in configs)} configurations per dataset "
          f"({', '.join(f'{m}/{a} x{q}' for m, a, q in configs)}), {len(shapes)} datasets")

    bounds = grid([L for *_, L in shapes])
    lengths = sorted({L for pair in bounds.values() for L in pair})
    s1 = {(m, a): {L: stage1_costs(m, a, L) for L in lengths} for m, a, _ in configs}
    base_s2 = Stage2Config()
    s2 = {L: stage2_costs(L, s1[configs[0][:2]][L]["tokens"], base_s2) for L in lengths}
    print(f"measured at lengths {', '.join(map(str, lengths))} (the shortest and longest of each tokenizer depth) "
          f"x {len(configs)} stage-1 models (+ stage 2); "
          f"per step at 128 x 512: " + ", ".join(
              f"{m}/{a} {(c := s1[(m, a)][VARY_LENGTH])['fixed'] / 1e9 + BATCH * c['per_row'] / 1e9:.0f} GFLOP, "
              f"{c['kernels']:.0f} kernels" for m, a, _ in configs))

    methods = {m for m, *_ in configs}
    header = (f"{'budget':8s} {'seeds':>5s} {'MFU':>4s} {'trials':>6s} {'s2':>5s} {'PFLOP':>7s} {'launch-h':>8s} | "
              f"{'GPU-h 1':>7s} {'2':>6s} {'total':>7s} {'packed':>7s} | {'med s':>6s} {'max min':>7s} | "
              f"{'GPUs':>5s} {'packed':>6s}")
    print(header + "\n" + "-" * len(header))
    for bname in args.budget.split(","):
        budget = BUDGETS[bname]
        s2cfg = from_flat_dict(budget.stage2, base=base_s2) if args.stage2 == "best" else None
        for seeds in map(int, args.seeds.split(",")):
            stage1, stage2 = [], []    # (FLOPs, kernel launches) of every stage-1 trial; stage-2 run and dataset FCN
            for name, n, n_test, L in shapes:
                epochs = budget.epochs(n, BATCH)
                steps = epochs * math.ceil(n / BATCH)
                for m, a, quota in configs:
                    c = interp(s1[(m, a)], bounds, L)
                    flops = steps * c["fixed"] + epochs * n * c["per_row"] + (budget.evaluations * n + n_test) * c["fwd"]
                    stage1 += [(flops, steps * c["kernels"])] * (quota * seeds)
                if s2cfg is None:
                    continue
                c, t = interp(s2, bounds, L), interp(s1[configs[0][:2]], bounds, L)
                n_gen = max(s2cfg.min_generate, n_test)
                prior_steps = s2cfg.epochs * math.ceil(n / s2cfg.batch_size)
                cas_steps = s2cfg.cas_epochs * math.ceil(0.8 * n_gen / s2cfg.cas_batch_size)
                flops = (s2cfg.epochs * n * c["prior_step"] + n_gen * (s2cfg.steps * c["prior_fwd"] + t["fwd"])
                         + s2cfg.cas_epochs * 0.8 * n_gen * c["fcn_step"] + 2 * (n_gen + n_test) * c["fcn_fwd"])
                launches = prior_steps * c["prior_kernels"] + cas_steps * c["fcn_kernels"]
                stage2 += [(flops, launches)] * (len(methods) * seeds)
                fcn_steps = s2cfg.fcn_epochs * math.ceil(0.8 * n / s2cfg.fcn_batch_size)
                stage2.append((s2cfg.fcn_epochs * 0.8 * n * c["fcn_step"], fcn_steps * c["fcn_kernels"]))
            for mfu in MFUS:
                h1, h2 = (sum(gpu_s(f, k, mfu, 1, launch_s) for f, k in runs) / 3600 for runs in (stage1, stage2))
                packed = sum(gpu_s(f, k, mfu, PACK, launch_s) for f, k in stage1 + stage2) / 3600
                one = [gpu_s(f, k, mfu, 1, launch_s) for f, k in stage1]
                print(f"{bname:8s} {seeds:5d} {mfu:4.0%} {len(stage1):6d} {len(stage2):5d} "
                      f"{sum(f for f, _ in stage1 + stage2) / 1e15:7.0f} "
                      f"{sum(k for _, k in stage1 + stage2) * launch_s / 3600:8.1f} | {h1:7.1f} {h2:6.1f} "
                      f"{h1 + h2:7.1f} {packed:7.1f} | {statistics.median(one):6.1f} "
                      f"{max(one) / 60:7.1f} | {math.ceil((h1 + h2) / HOURS):5d} {math.ceil(packed / HOURS):6d}")
    print(f"trials: stage-1 trials; s2: stage-2 runs (+ one FCN per dataset); PFLOP: both stages; launch-h: "
          f"launches x {args.launch_us:g} us, hours. GPU-h (1: stage 1, 2: stage 2, total): sum over runs of "
          f"max(FLOPs / ({PEAK / 1e12:.0f} TFLOP/s x MFU), launch floor); packed: {PACK} runs per GPU, launch floor / "
          f"{PACK}. med s / max min: median stage-1 trial (GPU-seconds) / longest (GPU-minutes), unpacked. GPUs: total "
          f"GPU-h / {HOURS} h, rounded up (packed: {PACK} runs on each). No early stopping: upper bounds.")


if __name__ == "__main__":
    main()
