"""Speed of the stage-2 building blocks on synthetic data of a realistic shape.

Measures MaskGIT training throughput, the cost of iterative decoding (token sampling only; the
tokenizer's decoding of tokens to series is stage 1's cost), and the FCN-based evaluation: feature
extraction, FID with its bootstrap interval, IS, and CAS (an FCN trained on generated series).

    python benchmarks/stage2_speed.py                    # CPU defaults, about a minute or two
    python benchmarks/stage2_speed.py --device cuda --n-gen 5000 --json stage2_speed.json
"""
from __future__ import annotations

import argparse
import json
import platform
import time

import numpy as np
import torch

from evaluation.generative import class_balanced_labels, fid_with_ci, inception_score
from models.fcn import predict
from models.prior import MaskGIT
from tune.engine.fcn import train_fcn
from tune.engine.generation import classification_accuracy_score


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device: torch.device):
    sync(device)
    t0 = time.perf_counter()
    out = fn()
    sync(device)
    return out, time.perf_counter() - t0


def synthetic_series(y: np.ndarray, length: int, rng: np.random.Generator) -> np.ndarray:
    """Class c is a sine of frequency c + 1 with random phase and noise: an easy, FCN-learnable problem."""
    t = np.linspace(0, 1, length)
    x = np.sin(2 * np.pi * (y[:, None] + 1) * t + rng.uniform(0, 2 * np.pi, (len(y), 1)))
    return (x + 0.2 * rng.normal(size=x.shape)).astype(np.float32)[:, None]  # (n, 1, l)


def bench_prior(args, device: torch.device) -> dict[str, float]:
    h, w = args.token_shape
    n = h * w
    torch.manual_seed(args.seed)
    prior = MaskGIT(args.codebook, n, args.n_classes, width=args.width, depth=args.depth, heads=args.heads).to(device)
    opt = torch.optim.AdamW(prior.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(args.seed)
    tokens = torch.randint(0, args.codebook, (args.batch_size, n), generator=gen).to(device)
    y = torch.randint(0, args.n_classes, (args.batch_size,), generator=gen).to(device)

    def train_steps(k: int) -> None:
        prior.train()
        for _ in range(k):
            loss = prior.loss(tokens, y, generator=gen)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

    train_steps(2)  # warm-up: allocator, kernels, lazy imports
    _, train_s = timed(lambda: train_steps(args.prior_iters), device)
    out = {"prior/params_M": sum(p.numel() for p in prior.parameters()) / 1e6,
           "prior/train_samples_per_s": args.prior_iters * args.batch_size / train_s}

    labels = class_balanced_labels(np.arange(args.n_gen) % args.n_classes, args.n_gen, gen).to(device)

    def generate(scale: float) -> torch.Tensor:
        return torch.cat([prior.sample(yb, steps=args.steps, guidance_scale=scale, generator=gen)
                          for yb in labels.split(args.gen_batch)])

    prior.sample(labels[:8], steps=args.steps, generator=gen)  # warm-up
    for scale in (1.0, args.guidance):
        _, s = timed(lambda: generate(scale), device)
        out[f"prior/sample_s_per_1000@cfg{scale:g}"] = s / args.n_gen * 1000
    return out


def bench_eval(args, device: torch.device) -> dict[str, float]:
    rng = np.random.default_rng(args.seed)
    labels = lambda n: np.arange(n) % args.n_classes
    y_tr, y_val, y_test, y_gen = (labels(n) for n in (args.n_fcn_train, max(args.n_fcn_train // 4, 2 * args.n_classes),
                                                      args.n_test, args.n_gen))
    x_tr, x_val, x_test, x_gen = (synthetic_series(y, args.length, rng) for y in (y_tr, y_val, y_test, y_gen))

    (fcn, info), fcn_s = timed(lambda: train_fcn(x_tr, y_tr, x_val, y_val, epochs=args.fcn_epochs,
                                                 batch_size=args.fcn_batch, seed=args.seed, device=device,
                                                 n_classes=args.n_classes), device)
    out = {"fcn/train_s_per_epoch": fcn_s / info.epochs_run,
           "fcn/val_acc": info.best_val_acc}
    (real, fake), feat_s = timed(lambda: (predict(fcn, x_test), predict(fcn, x_gen)), device)
    out["eval/features_s"] = feat_s
    fid, out["eval/fid_ci_s"] = timed(lambda: fid_with_ci(real.features, fake.features, n_boot=args.n_boot,
                                                          seed=args.seed), device)
    _, out["eval/is_s"] = timed(lambda: inception_score(fake.probs), device)
    cas, out["eval/cas_s"] = timed(lambda: classification_accuracy_score(
        x_gen, y_gen, x_test, y_test, n_classes=args.n_classes, epochs=args.cas_epochs, batch_size=args.fcn_batch,
        patience=args.cas_epochs, seed=args.seed, device=device), device)
    out["eval/cas_s_per_epoch"] = out["eval/cas_s"] / cas.train_info.epochs_run
    out.update({"eval/fid": fid.fid, "eval/cas": cas.accuracy})
    return out


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--token-shape", type=lambda s: tuple(int(v) for v in s.split("x")), default=(5, 16),
                   help="tokenizer token grid HxW, flattened for the prior (default 5x16)")
    p.add_argument("--codebook", type=int, default=32)
    p.add_argument("--n-classes", type=int, default=5)
    p.add_argument("--width", type=int, default=256)
    p.add_argument("--depth", type=int, default=4)
    p.add_argument("--heads", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=128, help="prior training batch")
    p.add_argument("--prior-iters", type=int, default=20, help="timed prior training steps")
    p.add_argument("--n-gen", type=int, default=1000, help="generated samples (sampling, FID/IS/CAS)")
    p.add_argument("--gen-batch", type=int, default=500)
    p.add_argument("--steps", type=int, default=10, help="MaskGIT decoding steps")
    p.add_argument("--guidance", type=float, default=2.0, help="a guidance scale != 1 (two forward passes)")
    p.add_argument("--length", type=int, default=150, help="series length for the FCN")
    p.add_argument("--n-fcn-train", type=int, default=400)
    p.add_argument("--n-test", type=int, default=1000)
    p.add_argument("--fcn-epochs", type=int, default=3)
    p.add_argument("--fcn-batch", type=int, default=64)
    p.add_argument("--cas-epochs", type=int, default=3)
    p.add_argument("--n-boot", type=int, default=200)
    p.add_argument("--json", metavar="FILE", help="also write the numbers and the settings as JSON")
    return p.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    results = {**bench_prior(args, device), **bench_eval(args, device)}
    print(f"{'metric':<34} {'value':>12}")
    for k, v in results.items():
        print(f"{k:<34} {v:>12.4g}")
    if args.json:
        env = {"device": str(device), "torch": torch.__version__, "threads": torch.get_num_threads(),
               "cpu": platform.processor() or platform.machine(),
               "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None}
        settings = {k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(args).items()}
        with open(args.json, "w") as f:
            json.dump({"results": results, "settings": settings, "env": env}, f, indent=2)


if __name__ == "__main__":
    main()
