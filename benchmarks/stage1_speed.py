"""Stage-1 training speed: seconds per epoch, samples/s, peak memory and parameters per method.

    python benchmarks/stage1_speed.py --dataset GunPoint [--ucr-root DIR] [--projector-dim 4096 256] [--json out.json]

Each configuration runs in a fresh process (so peak memory is its own), trains on the dataset's
training series with the study's loop (`tune.engine.tokenizer_training.train_tokenizer_epoch`), and
reports the median of `--epochs` epochs after one warm-up epoch.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import resource
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

CONFIGS = [("none", "none"), ("barlowtwins", "warp"), ("barlowtwins", "slice"), ("vibcreg", "warp"), ("vibcreg", "slice")]


def measure(dataset: str, ucr_root: str | None, ssl_method: str, aug_set: str, proj_dim: int, epochs: int,
            threads: int, batch_size: int, device: str) -> dict:
    import math

    import torch

    from datasets.ucr import load_dataset
    from tune.config import TrainConfig
    from tune.engine.loop import select_device
    from tune.engine.tokenizer_training import build_model, make_optimizer, train_tokenizer_epoch

    torch.set_num_threads(threads)
    dev = select_device(device)
    cfg = TrainConfig(dataset=dataset, ssl_method=ssl_method, aug_set=aug_set, proj_dim=proj_dim,
                      epochs=epochs + 1, batch_size=batch_size)
    data = load_dataset(dataset, ucr_root)
    x = torch.as_tensor(data.x_train, dtype=torch.float32).unsqueeze(1).to(dev)
    model = build_model(cfg, data.length).to(dev)
    steps = max(1, math.ceil(len(x) / cfg.batch_size))
    opt, sched = make_optimizer(model, cfg, cfg.epochs * steps)
    gen = torch.Generator().manual_seed(0)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    times, augs = [], []
    for epoch in range(epochs + 1):
        if dev.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        _, aug_s = train_tokenizer_epoch(model, opt, sched, x, cfg, gen, steps)
        if dev.type == "cuda":
            torch.cuda.synchronize()
        if epoch:
            times.append(time.perf_counter() - t0)
            augs.append(aug_s)
    epoch_s = statistics.median(times)
    peak = (torch.cuda.max_memory_allocated() / 2**20 if dev.type == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    return {"dataset": dataset, "config": ssl_method if ssl_method == "none" else f"{ssl_method}+{aug_set}",
            "proj_dim": proj_dim if ssl_method != "none" else 0, "epoch_s": epoch_s,
            "samples_per_s": len(x) / epoch_s, "aug_share": statistics.median(augs) / epoch_s,
            "peak_mib": peak, "rss_growth_mib": (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0) / 1024,
            "params_m": sum(p.numel() for p in model.parameters()) / 1e6, "n_train": len(x), "length": data.length,
            "threads": threads, "device": str(dev)}


def _child(queue, kwargs):
    queue.put(measure(**kwargs))


def run_isolated(**kwargs) -> dict:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(queue, kwargs))
    proc.start()
    result = queue.get()
    proc.join()
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="GunPoint")
    p.add_argument("--ucr-root")
    p.add_argument("--projector-dim", type=int, nargs="+", default=[4096, 256])
    p.add_argument("--epochs", type=int, default=3, help="timed epochs after one warm-up (median reported)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--device", default="auto")
    p.add_argument("--configs", nargs="+", help="subset, e.g. none barlowtwins+warp")
    p.add_argument("--json", help="write the rows to this JSON file")
    args = p.parse_args()
    rows = []
    wanted = set(args.configs or [])
    for ssl_method, aug_set in CONFIGS:
        name = ssl_method if ssl_method == "none" else f"{ssl_method}+{aug_set}"
        if wanted and name not in wanted:
            continue
        for proj in ([0] if ssl_method == "none" else args.projector_dim):
            rows.append(run_isolated(dataset=args.dataset, ucr_root=args.ucr_root, ssl_method=ssl_method,
                                     aug_set=aug_set, proj_dim=max(proj, 1), epochs=args.epochs,
                                     threads=args.threads, batch_size=args.batch_size, device=args.device))
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    base = next((r["epoch_s"] for r in rows if r["config"] == "none"), None)
    print(f"\n{args.dataset}: {rows[0]['n_train']} training series of length {rows[0]['length']}, "
          f"batch {args.batch_size}, {args.threads} thread(s), {rows[0]['device']}")
    print(f"{'config':22s} {'proj':>5s} {'s/epoch':>8s} {'samples/s':>10s} {'aug %':>6s} {'peak MiB':>9s} "
          f"{'params M':>9s} {'x base':>7s}")
    for r in rows:
        ratio = r["epoch_s"] / base if base else float("nan")
        print(f"{r['config']:22s} {r['proj_dim']:5d} {r['epoch_s']:8.3f} {r['samples_per_s']:10.1f} "
              f"{100 * r['aug_share']:6.2f} {r['peak_mib']:9.0f} {r['params_m']:9.2f} {ratio:7.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
