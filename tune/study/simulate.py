"""`--simulate`: a study without training, to prove the driver, the scheduler and the tracking store at
archive scale before an hour of a GPU cluster is spent on it.

Each trial waits the time the `--dry-run` cost model (tune.study.estimate) predicts for it, times the
scale (default 1/100), and reports the real metric keys at the real evaluation points. The values are
synthetic but reproducible: a hash of the dataset and the configuration sets the configuration's level,
a hash of the seed scatters its seeds around it, so configurations differ and the selection, the
statistics and the figures have something to do. Everything else runs for real: the searchers, the
scheduler and early stopping, MLflow logging from the trials, Tune checkpoints and `--resume`, stage 2's
scheduling, the summary and the report. Datasets' shapes come from the archive's summary table, so
`--datasets all` plans and runs without the data. Every parent run and the report say SIMULATED.

This module imports no torch: a simulated trial's process holds Ray and the MLflow client only.
"""
from __future__ import annotations

import hashlib
import json
import math
import tempfile
import time
import traceback
from pathlib import Path

from results.contract import (EPOCH_S, GEN_CAS, GEN_FID, GEN_FID_HIGH, GEN_FID_LOW, GEN_IS, GEN_IS_STD, GEN_N_GEN,
                              GEN_N_REAL, PERPLEXITY, RAW_1NN, REDUNDANCY, run_label, SELECTION_METRIC, STAGE2_S,
                              TEST_KNN, TEST_RECON, TEST_SVM, TRAIN_LOSS, TRAIN_S, TRIAL_S, USAGE, VAL_KNN, VAL_RECON)
from tune.study.context import TrialContext
from tune.study.estimate import stage2_s, trial_s
from tune.study.retry import StoreUnavailable
from tune.study.tracking import TrialRun

DEFAULT_SCALE = 0.01        # --simulate without a value: a trial waits 1/100 of its estimated time
VARY_LENGTH = 512           # the archive table's "Vary" (variable-length datasets): their length once resampled
STATE_FILE = "simulated_state.json"


def archive_shapes(names: list[str], val_fraction: float) -> dict[str, tuple[int, int]]:
    """dataset -> (training series after the validation split, length), from the archive's summary table."""
    from datasets.ucr import archive_summary

    table = archive_summary().set_index("Name")
    shapes = {}
    for name in names:
        n, length = int(table.at[name, "Train"]), table.at[name, "Length"]
        length = VARY_LENGTH if str(length).strip() == "Vary" else int(length)
        shapes[name] = (n - int(round(n * val_fraction)), length)
    return shapes


def published_yardsticks(names: list[str]) -> dict[str, dict[str, float]]:
    """The one raw-series yardstick a simulation can give without the data: the archive table's 1-NN
    Euclidean test accuracy (1 - its "ED (w=0)" error rate)."""
    from datasets.ucr import archive_summary

    table = archive_summary()
    error = dict(zip(table["Name"], table["ED (w=0)"]))
    return {n: {RAW_1NN: 1.0 - float(error[n])} for n in names}


def _unit(*parts) -> float:
    """A reproducible draw in [0, 1) from its parts."""
    digest = hashlib.sha1("|".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2 ** 64


def final_level(params: dict) -> float:
    """The simulated configuration's validation accuracy at the end of training: the dataset's level, the
    method's and augmentation set's effect, the weight's (small), then the seed's scatter."""
    ds, method = params["dataset"], params.get("ssl_method", "none")
    level = 0.55 + 0.35 * _unit(ds)
    if method != "none":
        level += 0.05 * (_unit(ds, method, params.get("aug_set")) - 0.35)
        level += 0.02 * (_unit(ds, method, params.get("aug_set"), params.get("aug_recon_weight")) - 0.5)
    searched = {k: str(v) for k, v in params.items() if k != "seed" and not k.startswith("stage2.")}
    level += 0.02 * (_unit(json.dumps(searched, sort_keys=True)) - 0.5)       # the rest of the configuration
    level += 0.02 * (_unit(ds, "seed", params.get("seed")) - 0.5)
    return min(0.99, max(0.05, level))


def simulated_metrics(params: dict, done: int, epochs: int, seconds_per_epoch: float) -> dict[str, float]:
    """What a real trial reports at an evaluation point (tune.engine.tokenizer_training.evaluate), the test
    metrics at the last epoch."""
    progress = 1.0 - math.exp(-4.0 * done / epochs)
    acc = final_level(params) * (0.6 + 0.4 * progress)
    recon = 0.05 + 0.3 * (1.0 - progress) + 0.05 * _unit(params["dataset"], "recon", params.get("aug_recon_weight"))
    metrics = {TRAIN_LOSS: recon + 0.1, EPOCH_S: seconds_per_epoch, TRAIN_S: seconds_per_epoch * done,
               "epochs_done": done, SELECTION_METRIC: acc, VAL_KNN: acc - 0.02, VAL_RECON: recon,
               PERPLEXITY: 8 + 24 * progress, USAGE: 0.2 + 0.6 * progress,
               REDUNDANCY: 0.1}
    if done == epochs:
        shift = 0.04 * (_unit(params["dataset"], "test", params.get("seed")) - 0.5)
        metrics |= {TEST_SVM: acc - 0.03 + shift, TEST_KNN: acc - 0.05 + shift, TEST_RECON: recon * 1.1}
    return metrics


def stage2_metrics(params: dict) -> dict[str, float]:
    """generation.evaluate_stage2's keys: a better tokenizer gets a lower FID and a higher CAS."""
    level, noise = final_level(params), _unit(params["dataset"], "gen", params.get("seed"))
    fid = 2.0 + 20.0 * (1.0 - level) + 2.0 * noise
    return {GEN_FID: fid, GEN_FID_LOW: 0.9 * fid, GEN_FID_HIGH: 1.1 * fid, GEN_IS: 1.0 + 3.0 * level,
            GEN_IS_STD: 0.1, GEN_CAS: level - 0.1 * noise, GEN_N_REAL: 100.0, GEN_N_GEN: 300.0}


def trial_seconds(params: dict, shape: tuple[int, int]) -> float:
    """The cost model's estimate of a real trial of `params` on a dataset of `shape`."""
    n, length = shape
    return trial_s(params.get("ssl_method", "none"), n, length, int(params["epochs"]), int(params.get("batch_size", 128)),
                   int(params.get("proj_dim", 4096)), int(params.get("tokenizer.hidden", 64)))


def run_simulated_trial(params: dict, context: TrialContext, *, trial_id: str, report, checkpoint_dir: Path) -> None:
    """The simulated twin of tune.study.trial.run_trial: the same MLflow run, the same reports to Tune, the
    same checkpoint-and-resume at evaluations; report(metrics, checkpoint_dir or None) sends one to Tune."""
    tracker = TrialRun(context.tracking_uri, context.experiment_id, context.parent_runs[params["dataset"]], trial_id,
                       run_label(params), params, tags=context.run_tags,
                       unused=() if context.stage2 or context.stage2_params else ("stage2.",))
    finished = tracker.finished_metrics(require=(GEN_FID,) if context.stage2 else ())
    if finished is not None:
        report(finished, None)
        return
    started = time.perf_counter()
    epochs, every = int(params["epochs"]), int(params["eval_every"])
    estimate = trial_seconds(params, context.shapes[params["dataset"]])
    state = checkpoint_dir / STATE_FILE
    start = json.loads(state.read_text())["epoch"] if state.exists() else 0
    try:
        points = [e for e in range(start + 1, epochs + 1) if e % every == 0 or e == epochs]
        last = start
        for done in points:
            time.sleep(context.simulate * estimate * (done - last) / epochs)
            for epoch in range(last + 1, done + 1):
                metrics = simulated_metrics(params, epoch, epochs, estimate / epochs) if epoch == done else {
                    TRAIN_LOSS: 0.4, EPOCH_S: estimate / epochs, "epochs_done": epoch}
                tracker.log_metrics(metrics, epoch, flush=epoch == done)
            state.write_text(json.dumps({"epoch": done}))
            report(metrics, checkpoint_dir)
            last = done
        tracker.log_dict(params, "config.json")
        if context.stage2:          # --stage2 all: the prior after every tokenizer
            metrics = {**metrics, **simulated_stage2(params, context, tracker)}
            report(metrics, None)
        tracker.log_metrics({TRIAL_S: time.perf_counter() - started}, epochs)
        tracker.finish()
    except StoreUnavailable:    # the store stayed away: writing the failure would wait as long again
        raise
    except SystemExit:          # Tune stopped it: the driver closes the run KILLED with the reason
        tracker.flush()
        raise
    except BaseException:
        tracker.finish("FAILED", error=traceback.format_exc())
        raise


def simulated_trainable(config: dict, context: TrialContext) -> None:
    """Tune function trainable of a simulated trial."""
    from ray import tune

    with tempfile.TemporaryDirectory(prefix="sim-") as d:
        checkpoint = tune.get_checkpoint()
        if checkpoint is not None:
            checkpoint.to_directory(d)

        def report(metrics: dict, attach: Path | None) -> None:
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(attach) if attach else None)

        run_simulated_trial(dict(config), context, trial_id=tune.get_context().get_trial_id(), report=report,
                            checkpoint_dir=Path(d))


def simulated_stage2(params: dict, context: TrialContext, tracker: TrialRun | None = None,
                     trial_id: str | None = None) -> dict:
    """Stage 2 of a simulated trial (`--stage2 best`: a finished trial's run, found by its trial id): waits
    its share of the estimated prior, generation and evaluation time and logs the generative metrics."""
    if tracker is None:
        tracker = TrialRun(context.tracking_uri, context.experiment_id, context.parent_runs[params["dataset"]],
                           trial_id, run_label(params), params, tags=context.run_tags)
    n, _ = context.shapes[params["dataset"]]
    seconds = stage2_s(n, int(params.get("batch_size", 128)), int(params.get("stage2.epochs", 100)))
    time.sleep(context.simulate * seconds)
    metrics = {**stage2_metrics(params), STAGE2_S: seconds}
    tracker.log_metrics(metrics, int(params["epochs"]), flush=True)
    return metrics
