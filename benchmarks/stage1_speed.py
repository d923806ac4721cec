"""Stage-1 training speed: seconds per epoch, samples/s, peak memory and parameters per method.

    python benchmarks/stage1_speed.py --dataset GunPoint [--ucr-root DIR] [--projector-dim 4096 256] [--json out.json]
    python benchmarks/stage1_speed.py --dataset FordA --device cuda --precision bf16 --min-seconds 5   # on a GPU

Each configuration runs in a fresh process (so peak memory is its own), trains on the dataset's
training series with the study's loop (`tune.engine.tokenizer_training.train_tokenizer_epoch`), and
reports the median of at least `--epochs` epochs (and `--min-seconds`) after one warm-up epoch. On a
GPU, peak memory is torch.cuda.max_memory_allocated and the GPU's utilisation is sampled by nvidia-smi
during the timed epochs. --json is rewritten after every configuration, so a run cut short keeps the
finished rows.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import queue as queue_module
import resource
import statistics
import sys
import time
from pathlib import Path

from gpu_util import GPUSampler, mean_util, visible_gpu  # benchmarks/, the script's folder

CONFIGS = [("none", "none"), ("barlowtwins", "warp"), ("barlowtwins", "slice"), ("vibcreg", "warp"), ("vibcreg", "slice")]


def measure(dataset: str, ucr_root: str | None, ssl_method: str, aug_set: str, proj_dim: int, epochs: int,
            threads: int, batch_size: int, device: str, precision: str = "auto", min_seconds: float = 0.0) -> dict:
    import math

    import torch

    from datasets.ucr import load_dataset
    from tune.config import TrainConfig
    from tune.engine.loop import autocast_dtype, select_device, to_device
    from tune.engine.tokenizer_training import build_model, make_optimizer, train_tokenizer_epoch

    torch.set_num_threads(threads)
    dev = select_device(device)
    cfg = TrainConfig(dataset=dataset, ssl_method=ssl_method, aug_set=aug_set, proj_dim=proj_dim,
                      epochs=epochs + 1, batch_size=batch_size, precision=precision)
    data = load_dataset(dataset, ucr_root)
    x = to_device(torch.as_tensor(data.x_train, dtype=torch.float32).unsqueeze(1), dev)
    model = build_model(cfg, data.length).to(dev)
    steps = max(1, math.ceil(len(x) / cfg.batch_size))
    opt, sched = make_optimizer(model, cfg, cfg.epochs * steps)
    gen = torch.Generator().manual_seed(0)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    times, augs, sampler = [], [], None
    while len(times) < epochs or sum(times) < min_seconds:
        if dev.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        _, aug_s = train_tokenizer_epoch(model, opt, sched, x, cfg, gen, steps)
        if dev.type == "cuda":
            torch.cuda.synchronize()
        if sampler is None:       # the first epoch warms up (allocations, kernel choice) and is not timed
            sampler = GPUSampler(visible_gpu(torch.cuda.current_device())) if dev.type == "cuda" else False
            continue
        times.append(time.perf_counter() - t0)
        augs.append(aug_s)
    util = mean_util(sampler.stop()) if sampler else None
    epoch_s = statistics.median(times)
    peak = (torch.cuda.max_memory_allocated() / 2**20 if dev.type == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    return {"dataset": dataset, "config": ssl_method if ssl_method == "none" else f"{ssl_method}+{aug_set}",
            "proj_dim": proj_dim if ssl_method != "none" else 0, "epoch_s": epoch_s,
            "samples_per_s": len(x) / epoch_s, "aug_share": statistics.median(augs) / epoch_s,
            "peak_mib": peak, "rss_growth_mib": (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0) / 1024,
            "params_m": sum(p.numel() for p in model.parameters()) / 1e6, "n_train": len(x), "length": data.length,
            "threads": threads, "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else str(dev),
            "precision": str(autocast_dtype(precision, dev) or torch.float32).removeprefix("torch."),
            "epochs_timed": len(times), "gpu_util_pct": util}


def _child(queue, kwargs):
    queue.put(measure(**kwargs))


def run_isolated(**kwargs) -> dict:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(queue, kwargs))
    proc.start()
    while True:
        try:
            result = queue.get(timeout=5)
            break
        except queue_module.Empty:
            if not proc.is_alive():
                raise RuntimeError(f"the measuring process died (exit code {proc.exitcode})") from None
    proc.join()
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="GunPoint")
    p.add_argument("--ucr-root")
    p.add_argument("--projector-dim", type=int, nargs="+", default=[4096, 256])
    p.add_argument("--epochs", type=int, default=3, help="timed epochs after one warm-up (median reported)")
    p.add_argument("--min-seconds", type=float, default=0.0, help="time at least this long (more epochs)")
    p.add_argument("--precision", default="auto", help="auto | fp32 | bf16 (default %(default)s)")
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
            try:
                rows.append(run_isolated(dataset=args.dataset, ucr_root=args.ucr_root, ssl_method=ssl_method,
                                         aug_set=aug_set, proj_dim=max(proj, 1), epochs=args.epochs,
                                         threads=args.threads, batch_size=args.batch_size, device=args.device,
                                         precision=args.precision, min_seconds=args.min_seconds))
            except RuntimeError as err:     # one configuration that crashes (out of memory, say) loses only itself
                print(f"{name} proj {proj}: {err}", file=sys.stderr, flush=True)
                continue
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
            if args.json:
                Path(args.json).write_text(json.dumps(rows, indent=2))
    if not rows:
        sys.exit("no configuration was measured")
    base = next((r["epoch_s"] for r in rows if r["config"] == "none"), None)
    print(f"\n{args.dataset}: {rows[0]['n_train']} training series of length {rows[0]['length']}, "
          f"batch {args.batch_size}, {args.threads} thread(s), {rows[0]['device']}, {rows[0]['precision']}")
    print(f"{'config':22s} {'proj':>5s} {'s/epoch':>8s} {'samples/s':>10s} {'aug %':>6s} {'peak MiB':>9s} "
          f"{'params M':>9s} {'x base':>7s} {'GPU %':>6s}")
    for r in rows:
        ratio = r["epoch_s"] / base if base else float("nan")
        util = f"{r['gpu_util_pct']:6.1f}" if r["gpu_util_pct"] is not None else f"{'-':>6s}"
        print(f"{r['config']:22s} {r['proj_dim']:5d} {r['epoch_s']:8.3f} {r['samples_per_s']:10.1f} "
              f"{100 * r['aug_share']:6.2f} {r['peak_mib']:9.0f} {r['params_m']:9.2f} {ratio:7.2f} {util}")


if __name__ == "__main__":
    main()
