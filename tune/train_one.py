"""Train one stage-1 configuration without Ray, for debugging and quick looks.

    python -m tune.train_one --dataset GunPoint --ssl-method barlowtwins --aug-set slice --epochs 50
"""
from __future__ import annotations

import argparse
import json
import time

from results.cli import run_cli
from results.contract import TEST_KNN, TEST_RECON, TEST_SVM, VAL_SVM
from tune.cli import check_output_file, write_json
from tune.config import TrainConfig, check_trainable, from_flat_dict, parse_overrides, to_flat_dict


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    d = TrainConfig()
    p = argparse.ArgumentParser(prog="python -m tune.train_one", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default=d.dataset, help="UCR dataset name (default %(default)s, bundled)")
    p.add_argument("--ucr-root", help="UCRArchive_2018 folder (default: $UCR_ARCHIVE_DIR, the download cache, "
                                      "then the datasets bundled with aeon)")
    p.add_argument("--ssl-method", default=d.ssl_method, help="none | barlowtwins | vibcreg (default %(default)s)")
    p.add_argument("--aug-set", default=d.aug_set, help="warp | slice | gauss, or '+'-joined (default %(default)s)")
    p.add_argument("--aug-recon-weight", type=float, default=d.aug_recon_weight)
    p.add_argument("--epochs", type=int, default=d.epochs)
    p.add_argument("--eval-every", type=int, default=d.eval_every)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--device", default=d.device, help="auto | cpu | cuda (default %(default)s)")
    p.add_argument("--checkpoint-dir", help="save state here at every evaluation and resume from it")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="any other config key, e.g. --set proj_dim=256 --set tokenizer.codebook_size=64")
    p.add_argument("--json", help="write the final metrics to this JSON file")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    values = {"dataset": args.dataset, "ssl_method": args.ssl_method, "aug_set": args.aug_set,
              "aug_recon_weight": args.aug_recon_weight, "epochs": args.epochs, "eval_every": args.eval_every,
              "seed": args.seed, "device": args.device, **parse_overrides(args.overrides)}
    cfg = from_flat_dict(values)                # TrainConfig checks every value, --epochs and --eval-every too
    check_output_file(args.json, "--json")
    from datasets.ucr import load_dataset
    from tune.engine.tokenizer_training import train_stage1   # torch and the models load after the arguments are checked

    data = load_dataset(cfg.dataset, args.ucr_root, val_fraction=cfg.val_fraction, seed=cfg.seed,
                        nan_policy=cfg.nan_policy)
    check_trainable(data, cfg)                                # what the study's plan refuses, in one line too

    print(json.dumps(to_flat_dict(cfg)))
    start = time.perf_counter()

    def show(metrics: dict, epoch: int) -> None:
        if VAL_SVM in metrics:
            shown = {k: round(v, 4) for k, v in metrics.items() if k != "epochs_done"}
            print(f"epoch {epoch:4d}/{cfg.epochs}  " + "  ".join(f"{k}={v}" for k, v in shown.items()), flush=True)

    final = train_stage1(cfg, data, on_epoch=show, checkpoint_dir=args.checkpoint_dir)
    print(f"\n{cfg.dataset} ssl={cfg.ssl_method} aug={cfg.aug_set} w={cfg.aug_recon_weight}: "
          f"test svm {final[TEST_SVM]:.3f}  knn {final[TEST_KNN]:.3f}  "
          f"recon {final[TEST_RECON]:.4f}  val svm {final[VAL_SVM]:.3f}  "
          f"({time.perf_counter() - start:.1f}s)")
    write_json(args.json, final)
    return 0


if __name__ == "__main__":
    run_cli(main)
