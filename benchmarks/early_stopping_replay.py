"""What early stopping would save and change on a finished study: ASHA replayed on its logged curves.

    python benchmarks/early_stopping_replay.py --study NAME --tracking-uri sqlite:///.../mlflow.db \\
        [--design study|per-dataset] [--json out.json]

Run a study with `--early-stopping off` first. Every trial logged `val/svm_acc` at each evaluation
point (step = epochs done) with a timestamp; this feeds those results, in the order they arrived, to
the study's own scheduler (tune.study.scheduler.SeedMeanHalving with the study's epochs and evaluation
period). A trial it stops is marked KILLED, as a live run would leave it, and the report's own
selection (results.study_report.best_per_method, compared_methods) is run on both versions:

  saved     = training seconds of the epochs the stopped trials would not have run, over all training
              (and the same in epochs, which does not depend on what else the machine was running)
  selection = per dataset and method, whether the selected configuration changes
  ranking   = the average test-accuracy ranks of the compared methods, with and without

What a replay cannot show: in a live run the searcher hears PRUNED for a stopped trial and may propose
other configurations afterwards, and freed slots shift the order in which later results arrive.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path


from mlflow.tracking import MlflowClient
from ray.tune.schedulers import TrialScheduler

from results.cli import run_cli
from results.contract import BASELINE_METHOD, SELECTION_METRIC, TRAIN_S
from results.runs import load_study, per_config
from results.stats import average_ranks
from results.study_report import SCORE, compared_methods
from tune.study.scheduler import GRACE_FRACTION, RACE_KEYS, TIME_ATTR, SeedMeanHalving


@dataclass
class ReplayedTrial:          # the attributes the scheduler reads from a Tune trial
    trial_id: str
    config: dict = field(default_factory=dict)


DESIGNS = {   # name -> (race keys within a dataset, grace fraction)
    "study": (RACE_KEYS, GRACE_FRACTION),      # what the study's scheduler does
    "per-dataset": ((), 0.0),                  # the first design: one race per dataset, from the first evaluation
}


def replay(trials, client: MlflowClient, design: str = "study") -> dict[str, int]:
    """Feed every SSL trial's evaluation results to the scheduler in arrival order; trial key -> stop epoch."""
    ssl = trials[(trials["status"] == "FINISHED") & (trials["ssl_method"] != BASELINE_METHOD)]
    epochs = {ds: int(g["epochs"].astype(float).max()) for ds, g in ssl.groupby("dataset")}
    every = {ds: int(g["eval_every"].astype(float).max()) for ds, g in ssl.groupby("dataset")}
    race_keys, grace = DESIGNS[design]
    seeds = int(trials["seed"].nunique())
    asha = SeedMeanHalving(epochs, every, seeds, metric=SELECTION_METRIC, mode="max", race_keys=race_keys,
                           grace_fraction=grace)
    events, replayed = [], {}
    for row in ssl.itertuples():
        replayed[row.key] = ReplayedTrial(row.key, {"dataset": row.dataset, "ssl_method": row.ssl_method,
                                                    "aug_set": row.aug_set, "aug_recon_weight": row.aug_recon_weight,
                                                    "config": row.config_id, "seed": int(row.seed)})
        for m in client.get_metric_history(row.run_id, SELECTION_METRIC):
            events.append((m.timestamp, row.key, m.step, m.value))
    stopped: dict[str, int] = {}
    for _, key, step, value in sorted(events):
        if key in stopped:
            continue
        action = asha.on_trial_result(None, replayed[key], {TIME_ATTR: step, SELECTION_METRIC: value})
        if action == TrialScheduler.STOP:
            stopped[key] = step
    return stopped


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--study", required=True)
    p.add_argument("--tracking-uri", required=True)
    p.add_argument("--design", default="study", choices=list(DESIGNS),
                   help="study: the scheduler as the study runs it; per-dataset: the first design, for comparison")
    p.add_argument("--json")
    args = p.parse_args(argv)
    runs = load_study(args.study, args.tracking_uri)
    trials = runs.trials
    if (trials["status"] == "KILLED").any():
        sys.exit("error: the study already has stopped trials; replay a study run with --early-stopping off")
    stopped = replay(trials, MlflowClient(args.tracking_uri), args.design)

    train_s = trials[TRAIN_S].astype(float)
    fraction_left = [(1 - stopped[k] / float(e)) if k in stopped else 0.0
                     for k, e in zip(trials["key"], trials["epochs"])]
    saved_s = float((train_s * fraction_left).sum())
    epochs = trials["epochs"].astype(float)
    saved_epochs = float((epochs * fraction_left).sum())
    es_runs = replace(runs, trials=trials.assign(status=[("KILLED" if k in stopped else s)
                                                         for k, s in zip(trials["key"], trials["status"])]))

    picks = {}
    for name, r in (("off", runs), ("on", es_runs)):
        best, scores, note = compared_methods(r, per_config(r))
        picks[name] = (best.set_index(["dataset", "method"]), scores, note)
    (best_off, scores_off, _), (best_on, scores_on, note_on) = picks["off"], picks["on"]
    changed, test_change = [], []
    for (ds, m), pick in best_off.iterrows():
        other = best_on.loc[(ds, m)] if (ds, m) in best_on.index else None
        if other is None or other["config_id"] != pick["config_id"]:
            gain = math.nan if other is None else other[SCORE] - pick[SCORE]
            changed.append(f"{ds} {m} ({'no finished configuration' if other is None else f'test SVM {gain:+.3f}'})")
            test_change.append(gain)
    ranks_off = average_ranks(scores_off)["avg_rank"].round(2).to_dict()
    ranks_on = average_ranks(scores_on)["avg_rank"].round(2).to_dict()
    n_ssl = int((trials["ssl_method"] != BASELINE_METHOD).sum())
    row = {"study": args.study, "design": args.design, "trials": len(trials), "ssl_trials": n_ssl, "stopped": len(stopped),
           "stopped_at": sorted(set(stopped.values())), "train_s": float(train_s.sum()), "saved_s": saved_s,
           "saved_share": saved_s / float(train_s.sum()),
           "saved_epoch_share": saved_epochs / float(epochs.sum()), "selections": len(best_off),
           "selections_changed": changed, "test_change_of_changed": test_change, "ranks_off": ranks_off, "ranks_on": ranks_on, "note_on": note_on}
    print(f"{len(stopped)} of {n_ssl} SSL trials stopped (at epochs {row['stopped_at']}); training saved "
          f"{saved_s:.0f} of {row['train_s']:.0f} s ({100 * row['saved_share']:.1f}%; "
          f"{100 * row['saved_epoch_share']:.1f}% of all trials' epochs)")
    print(f"selected configuration changed for {len(changed)} of {len(best_off)} (dataset, method) pairs"
          + (f": {', '.join(changed)}" if changed else ""))
    print("average test ranks without -> with early stopping:")
    for col in ranks_off:
        print(f"  {col}: {ranks_off[col]} -> {ranks_on.get(col)}")
    if note_on:
        print(note_on)
    if args.json:
        Path(args.json).write_text(json.dumps(row, indent=2, default=str))


if __name__ == "__main__":
    run_cli(main)
