"""Stage 2 for one saved tokenizer without Ray: train its MaskGIT prior, generate, score FID / IS / CAS.

    python -m tune.generate_one --checkpoint RUN/tokenizer.pt --set epochs=200 --json gen.json
"""
from __future__ import annotations

import argparse
import json

from results.cli import run_cli
from results.contract import DEFAULT_RESULTS_DIR, PRIOR_TRAIN_LOSS, PRIOR_VAL_LOSS
from tune.cli import check_output_file, write_json
from tune.config import parse_overrides, stage2_config, to_flat_dict

DEFAULT_FCN_CACHE = DEFAULT_RESULTS_DIR / "fcn"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m tune.generate_one", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True,
                   help="a stage-1 tokenizer.pt (its dataset and split settings are used)")
    p.add_argument("--ucr-root", help="UCRArchive_2018 folder (default: $UCR_ARCHIVE_DIR, the download cache, "
                                      "then the datasets bundled with aeon)")
    p.add_argument("--fcn-cache", default=str(DEFAULT_FCN_CACHE), help="FCN cache folder (default %(default)s)")
    p.add_argument("--checkpoint-dir", help="save the prior's state here and resume from it")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="stage-2 config keys, e.g. --set epochs=200 --set guidance_scale=2 --set device=cpu")
    p.add_argument("--figure", help="write the real-vs-generated PNG here")
    p.add_argument("--json", help="write the metrics to this JSON file")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    overrides = parse_overrides(args.overrides)
    cfg = stage2_config(overrides)                   # bad keys fail before anything loads
    check_output_file(args.json, "--json")
    check_output_file(args.figure, "--figure")
    import matplotlib.pyplot as plt

    from datasets.ucr import load_dataset
    from tune.engine.generation import evaluate_stage2
    from tune.engine.tokenizer_training import load_tokenizer

    tokenizer, trained_on = load_tokenizer(args.checkpoint)
    data = load_dataset(trained_on["dataset"], args.ucr_root, val_fraction=trained_on["val_fraction"],
                        seed=trained_on["seed"], nan_policy=trained_on["nan_policy"])   # its own dataset and split
    print(json.dumps(to_flat_dict(cfg)))

    def show(metrics: dict, epoch: int) -> None:
        if PRIOR_VAL_LOSS in metrics:
            print(f"prior epoch {epoch:4d}/{cfg.epochs}  train_loss={metrics[PRIOR_TRAIN_LOSS]:.4f}  "
                  f"val_loss={metrics[PRIOR_VAL_LOSS]:.4f}", flush=True)

    metrics, figure = evaluate_stage2(tokenizer, data, cfg, cache_dir=args.fcn_cache, on_epoch=show,
                                      checkpoint_dir=args.checkpoint_dir)
    print("\n".join(f"{k:20s} {v:.4f}" for k, v in metrics.items()))
    if args.figure:
        figure.savefig(args.figure, dpi=100)
    plt.close(figure)
    write_json(args.json, metrics)
    return 0


if __name__ == "__main__":
    run_cli(main)
