"""A study from plan to results: start (or join) Ray, set up MLflow, run the Tune searches, then
stage 2 for the best tokenizers, the parent runs' summary and the report."""
from __future__ import annotations

import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

import pandas as pd

from results.contract import (BUDGET_PARAM, GEN_CAS, GEN_FID, GEN_IS, OBJECTIVES_PARAM, PLANNED_CONFIGS_PARAM,
                              SEEDS_PARAM, SELECTION_METRIC, SIMULATE_PARAM, trial_label)
from results.errors import UsageError
from tune.study.auth import TOKEN_FILE
from tune.study.console import (TrialLines, answer_line, experiment_url, mlflow_ui_command, phase, quiet,
                                start_lines)
from tune.study.interrupts import (STOP, STORE_EXIT, StudyStopped, claim_signals, clear_stopped, close_stopped,
                                   interrupted_note, stop_on_signals, study_failure, tune_running)
from tune.study.plan import StudyPlan, claim_study_folder, release_study_folder
from tune.study.preflight import check_node_resources, ray_node_resources
from tune.study.retry import RESUME_HINT, StoreUnavailable
from tune.study.tracking import TrialStatus, artifact_root, code_version_tags
from tune.study.trial_storage import DropEndedTrialCheckpoints, whole_files

MODE = "max"


def run_study(plan: StudyPlan, ray_progress: bool = False) -> int:
    """Start (or join) Ray, set up MLflow, run the Tune searches, then summarise and report; the console
    shows one line per trial (tune.study.console), or Ray's own progress tables with `ray_progress`. A
    signal or a failed tracking store stops it cleanly (tune.study.interrupts): exit 130 / 143 / 1, never 0."""
    state: dict = {"start": time.time()}
    with stop_on_signals() as stop:
        try:
            runs = _run_study(plan, state, ray_progress)
        except (StoreUnavailable, OSError) as err:   # the store, a full or unwritable disk: one line, as in a trial
            if not study_failure(err):
                raise
            stop.request(study_failure(err), STORE_EXIT)
        except StudyStopped:
            pass
        if stop:
            return _stopped(plan, state, stop.reason, stop.code)
    if plan.report:
        with phase("report (tables, figures, tests)"):
            out = _write_report(plan)
        print(f"Report: {out / 'summary.md'}")
    print(f"MLflow UI:  {mlflow_ui_command(plan.tracking_uri)}\n  then "
          f"{experiment_url(plan.tracking_uri, state['tracker'].experiment_id)}")
    print(("SIMULATED, the metrics are synthetic: " if plan.simulate else "") + answer_line(state["summary"], plan.budget.name),
          flush=True)
    return exit_code(runs.trials["status"] if len(runs.trials) else [],
                     _finite_objectives(runs.trials) if len(runs.trials) else 0)


def _run_study(plan: StudyPlan, state: dict, ray_progress: bool = False):
    """The study's steps in order: claim its folder, start Ray, open its MLflow runs, run the searches, then
    stage 2, the yardsticks and the summary. A failure before the first trial releases the study folder."""
    import ray

    from tune.study.summary import summarize

    _quiet_frameworks()
    reporter = None if ray_progress else quiet()     # also for a resumed Tuner: its output settings and loggers
    if plan.resume:
        check_tune_state(plan.storage / plan.name)    # before Ray starts: nothing else is printed
    else:
        claim_study_folder(plan)
    started = False
    try:
        ctx = _start_ray(plan, log_to_driver=ray_progress)
        claim_signals()
    except BaseException:
        if not plan.resume:
            release_study_folder(plan)
        raise
    try:
        check_node_resources(ray_node_resources(), plan.cpus_per_trial, plan.gpus_per_trial)
        started = True
        tracker, parents, context = _open_tracking(plan, state)
        slots = plan.max_concurrent or _slots(plan, ray.cluster_resources())
        tuner, searcher = _tuner(plan, _trainable(plan, context), slots, reporter, ray_progress)
        print("\n".join(start_lines(plan.name, plan.total_trials, plan.datasets, slots, plan.tracking_uri,
                                    _dashboard(ctx), tracker.experiment_id)), flush=True)
        with tune_running():
            try:
                tuner.fit()
            except Exception:
                if not STOP:      # a study told to stop ends in _stopped(), whatever fit() raised on the way
                    raise
        if STOP:      # fit() returned because the study was told to stop: _stopped() ends it
            return None
        runs = _stage2(plan, context)
        configs_run = None if searcher is None else {ds: searcher.configs_run(ds) for ds in plan.datasets}
        with phase(f"yardsticks on the raw series (linear probes, 1-NN, MiniRocket) for {len(plan.datasets)} "
                   f"dataset(s)"):
            yardsticks = dataset_yardsticks(plan, on_data=lambda ds, data: tracker.log_dataset(parents[ds], data))
        with phase(f"summary on the {len(parents)} parent run(s)"):
            state["summary"] = summarize(runs, plan, tracker, parents, wall_s=time.time() - state["start"],
                                         configs_run=configs_run, yardsticks=yardsticks)
    except BaseException:
        if not started and not plan.resume:
            release_study_folder(plan)
        raise
    finally:
        ray.shutdown()
    return runs


def _quiet_frameworks() -> None:
    """Optuna, Ray and MLflow settings of the driver: no usage stats or warnings the study does not act on, and
    a tracking server that goes away mid-study fails a call in seconds, not after MLflow's minutes of retries."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", message="The number of trials is too small to compute importances")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")


def _open_tracking(plan: StudyPlan, state: dict):
    """The study's MLflow experiment and a parent run per dataset (state["tracker"], state["parents"]: what
    _stopped() closes), and the TrialContext every trial gets; returns (tracker, parents, context)."""
    from tune.study.context import TrialContext
    from tune.study.tracking import StudyTracker

    code = code_version_tags()
    tracker = StudyTracker(plan.tracking_uri, plan.name, artifact_root(plan.tracking_uri, plan.results_dir, plan.name),
                           create=not plan.resume, run_tags=code)
    state["tracker"] = tracker
    simulated = {SIMULATE_PARAM: plan.simulate} if plan.simulate else {}
    parents = {ds: tracker.parent_run(ds, {**simulated, "study": plan.name, "space": plan.space.name,
                                           BUDGET_PARAM: plan.budget.name, "search": plan.search,
                                           SEEDS_PARAM: plan.seeds, "num_samples": plan.num_samples,
                                           PLANNED_CONFIGS_PARAM: plan.configs_per_dataset, "steps": plan.budget.steps,
                                           OBJECTIVES_PARAM: ",".join(plan.objectives), **plan.dataset_config(ds)})
               for ds in plan.datasets}
    state["parents"] = parents
    if plan.resume:
        clear_stopped(tracker.client, tracker.experiment_id, parents)
    context = TrialContext(tracking_uri=plan.tracking_uri, experiment_id=tracker.experiment_id,
                           parent_runs=parents, ucr_root=plan.ucr_root, cpus=plan.cpus_per_trial,
                           gpus=plan.gpus_per_trial, train_storage=str(plan.storage / f"{plan.name}-train"),
                           stage2=plan.stage2 == "all", fcn_cache=str(plan.results_dir / "fcn"),
                           stage2_params=plan.stage2 != "off", run_tags=code, simulate=plan.simulate,
                           shapes=plan.shapes if plan.simulate else {})
    return tracker, parents, context


def _trainable(plan: StudyPlan, context):
    """The trial Tune runs: a simulated one, a Ray Train driver (its Train worker holds the CPUs / GPUs) or a
    function trainable."""
    from ray import tune

    from tune.study.trial import named_trainable, stage1_trainable, train_driver

    if plan.simulate:     # no training: a light process per trial (tune.study.simulate)
        from tune.study.simulate import simulated_trainable

        return named_trainable(tune.with_resources(tune.with_parameters(simulated_trainable, context=context),
                                                   {"cpu": plan.cpus_per_trial}), "SimulatedTrial")
    if plan.executor == "train":
        return named_trainable(tune.with_resources(tune.with_parameters(train_driver, context=context),
                                                   {"cpu": 0, "memory": 256 * 1024 ** 2}), "TrainDriverTrial")
    return named_trainable(tune.with_resources(tune.with_parameters(stage1_trainable, context=context),
                                               {"cpu": plan.cpus_per_trial}), "Stage1Trial")


def _tuner(plan: StudyPlan, trainable, slots: int, reporter, ray_progress: bool):
    """A new Tuner over the study's searcher and scheduler, or the stopped study's restored one (no searcher
    at hand then); returns (tuner, searcher or None)."""
    from ray import tune

    from tune.study.search import StudySearch

    path = plan.storage / plan.name
    if plan.resume:
        if not tune.Tuner.can_restore(str(path), storage_filesystem=whole_files()):
            raise UsageError(f"study {plan.name} has no Tune state to resume at {path}; start it again without --resume")
        return tune.Tuner.restore(str(path), trainable=trainable, resume_errored=True,
                                  storage_filesystem=whole_files()), None
    lines = None if ray_progress else TrialLines(
        plan.total_trials, slots, [m for m, _ in plan.objective_specs],
        {ds: plan.per_dataset[ds]["epochs"] for ds in plan.datasets})
    callbacks = [TrialStatus(plan.tracking_uri, plan.name, plan.early_stopping), DropEndedTrialCheckpoints()] + \
        ([lines] if lines else [])
    searcher = StudySearch(plan.datasets, plan.cells, seeds=plan.seeds, metric=[m for m, _ in plan.objective_specs],
                           mode=[mode for _, mode in plan.objective_specs], seed=plan.search_seed,
                           base={ds: plan.dataset_config(ds) for ds in plan.datasets})
    tuner = tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(
            metric=SELECTION_METRIC, mode=MODE, search_alg=searcher, num_samples=searcher.total_trials,
            scheduler=early_stopping_scheduler(plan), max_concurrent_trials=slots,
            # a simulated trial's actor is reused: its start-up is a worker node's cost, not the driver's
            reuse_actors=bool(plan.simulate), trial_name_creator=_trial_name, trial_dirname_creator=_trial_dirname),
        run_config=tune.RunConfig(
            name=plan.name, storage_path=str(plan.storage.resolve()), storage_filesystem=whole_files(),
            verbose=1 if ray_progress else 0,
            progress_reporter=reporter,
            failure_config=tune.FailureConfig(max_failures=2),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=None),   # see tune.study.trial_storage
            callbacks=callbacks))
    return tuner, searcher


def _stage2(plan: StudyPlan, context):
    """The study's runs after its searches, with stage 2 for the selected tokenizers where the plan asks."""
    from results.runs import load_study

    with phase("reading the study's runs from MLflow"):
        runs = load_study(plan.name, plan.tracking_uri)
    if plan.stage2 in ("best", "front"):
        stage2_for_best(runs, plan, context)
        runs = load_study(plan.name, plan.tracking_uri)
    return runs


def _stopped(plan: StudyPlan, state: dict, reason: str, code: int) -> int:
    """The end of a stopped study: its killed trials' runs closed KILLED with the reason, the summary and
    the report marked interrupted (a store failure writes nothing more); one line on stderr."""
    resume = (f"python tune/run_ablation.py --name {plan.name} --results-dir {plan.results_dir} --resume")
    tracker, parents = state.get("tracker"), state.get("parents")
    if code == STORE_EXIT or tracker is None or parents is None:
        if tracker is None and not plan.resume:
            release_study_folder(plan)
        print(f"error: {reason.removesuffix(RESUME_HINT)}" + (f"; continue it with: {resume}" if code == STORE_EXIT
                                                               else "; the study stopped before its first trial"),
              file=sys.stderr)
        return code
    import signal

    from results.runs import load_study
    from tune.study.summary import summarize

    for s in (signal.SIGINT, signal.SIGTERM):      # closing takes seconds: let it finish
        signal.signal(s, signal.SIG_IGN)
    why = f"interrupted ({reason}); continue the study with --resume"
    close_stopped(tracker.client, tracker.experiment_id, parents, why, note="")
    runs = load_study(plan.name, plan.tracking_uri)
    finished = int((runs.trials["status"] == "FINISHED").sum()) if len(runs.trials) else 0
    note = interrupted_note(finished, plan.total_trials)
    summarize(runs, plan, tracker, parents, wall_s=time.time() - state["start"])
    close_stopped(tracker.client, tracker.experiment_id, parents, why, note=note)   # the parents end KILLED
    print(f"\nStudy {plan.name} {note}", flush=True)
    if plan.report:
        _write_report(plan)
    print(f"error: {reason}: study {plan.name} {note.replace('`--resume`', resume)}", file=sys.stderr)
    return code


def check_tune_state(path: Path) -> None:
    """Refuse to resume from a damaged Tune state (a truncated experiment or searcher state file: what a full
    disk left before tune.study.trial_storage.whole_files): Tune would log "Failed to restore the run state"
    and start afresh, trials unrun."""
    import json
    import pickle

    for pattern, load in (("experiment_state-*.json", lambda f: json.loads(f.read_text())),
                          ("search_gen_state-*.json", lambda f: pickle.loads(f.read_bytes())),   # pickled
                          ("searcher-state-*.pkl", lambda f: pickle.loads(f.read_bytes()))):
        states = sorted(path.glob(pattern), key=lambda p: p.stat().st_mtime)
        if not states:
            continue        # Tuner.can_restore says what is missing
        try:
            load(states[-1])
        except Exception as err:  # noqa: BLE001 - whatever a damaged file raises
            raise UsageError(f"the Tune state {states[-1]} of the study is damaged ({type(err).__name__}: "
                             f"{_first_line(err)}); it cannot be resumed: start the study again under another "
                             f"--name") from None


def _finite_objectives(trials: pd.DataFrame) -> int:
    """Finished trials with a finite selection objective."""
    done = trials[trials["status"] == "FINISHED"]
    if SELECTION_METRIC not in done:
        return 0
    return int(pd.to_numeric(done[SELECTION_METRIC], errors="coerce").notna().sum())


def exit_code(statuses, finite: int | None = None) -> int:
    """0 when some trial finished with a finite objective; 1 (with the reason on stderr) when every trial
    failed, none finished, or none has a defined objective (NaN: the study selects nothing). A share of
    failed trials is printed but is no failure of the study: the report lists them."""
    counts = pd.Series(list(statuses), dtype=object).value_counts()
    finished, total = int(counts.get("FINISHED", 0)), int(counts.sum())
    if finished == 0:
        print(f"error: none of the study's {total} trial(s) finished ({int(counts.get('FAILED', 0))} failed); "
              f"see the summary and the MLflow runs' error tags", file=sys.stderr)
        return 1
    if finite == 0:
        print(f"error: {finished} trial(s) finished but none has a defined objective ({SELECTION_METRIC} is NaN), "
              f"so nothing can be selected; see the summary", file=sys.stderr)
        return 1
    if finished < total:
        print(f"warning: {total - finished} of {total} trials did not finish ({finished / total:.0%} finished); "
              f"the summary lists them", file=sys.stderr)
    return 0


def early_stopping_scheduler(plan: StudyPlan):
    """Seed-complete successive halving at the evaluation points when the plan asks for it, else Tune's FIFO default."""
    if not plan.early_stopping:
        return None
    from tune.study.scheduler import SeedMeanHalving

    return SeedMeanHalving({ds: plan.per_dataset[ds]["epochs"] for ds in plan.datasets},
                           {ds: plan.per_dataset[ds]["eval_every"] for ds in plan.datasets}, plan.seeds,
                           metric=SELECTION_METRIC, mode=MODE)


def dataset_yardsticks(plan: StudyPlan, on_data=None) -> dict[str, dict[str, float]]:
    """Per dataset, the raw-series yardsticks (computed once, cached under the results folder);
    on_data(dataset, UCRDataset) sees each dataset loaded (the parent run's dataset input)."""
    from datasets.ucr import load_dataset
    from tune.engine.yardsticks import cached_yardsticks

    if plan.simulate:
        from tune.study.simulate import published_yardsticks

        return published_yardsticks(plan.datasets)
    out = {}
    for ds in plan.datasets:
        data = load_dataset(ds, plan.ucr_root, val_fraction=0.0, nan_policy=plan.train.get("nan_policy", "resample"))
        if on_data:
            on_data(ds, data)
        out[ds] = cached_yardsticks(data, plan.results_dir / "yardsticks")
    return out


def stage2_for_best(runs, plan: StudyPlan, context) -> None:
    """Stage 2 for each dataset's selected tokenizer per SSL method, the baseline included (results.selection's
    rule: seed-complete configurations only), on every seed of it, so FID / IS / CAS have a mean and an
    interval; each writes into the run of its seed. `front`: every Pareto-optimal configuration and the baseline.

    Where trials run through Ray Train (GPU studies, --executor train), so does each stage 2: one
    TorchTrainer run of a worker with a trial's CPUs and GPU share, as many at once as trials. CPU-only
    studies run each as a bare Ray task: a TorchTrainer run costs ~30 s of start-up on 2 cores
    (notes/ray-stack.md), more than a small prior trains."""
    import ray

    from results.pareto import stage2_front
    from results.selection import select_best

    trials = runs.trials
    picks = (select_best(trials, by=["dataset", "ssl_method"]) if plan.stage2 == "best"
             else stage2_front(trials, plan.objective_specs))     # front: every Pareto-optimal one + the baseline
    done = trials[trials["status"] == "FINISHED"]
    rows = [row for p in picks.itertuples()
            for _, row in done[done["config_id"] == p.config_id].sort_values("seed").iterrows()]
    args = [(row[runs.params].dropna().to_dict(), row["trial_id"], context) for row in rows]
    if plan.executor == "train":
        from concurrent.futures import ThreadPoolExecutor

        from tune.study.trial import stage2_in_ray_train

        pool = ThreadPoolExecutor(plan.max_concurrent or _slots(plan, ray.cluster_resources()))
        refs = [pool.submit(stage2_in_ray_train, *a) for a in args]
        pool.shutdown(wait=False)       # the submitted runs go on; its threads end with the last
        get = lambda future: future.result()
    else:
        task = ray.remote(num_cpus=plan.cpus_per_trial, num_gpus=plan.gpus_per_trial)(_stage2_task)
        refs = [task.remote(*a) for a in args]
        get = ray.get
    print(f"stage 2 for {len(refs)} tokenizers (" + ("the selected configuration per dataset and method"
                                                    if plan.stage2 == "best" else "Pareto-optimal configurations and "
                                                    "the baselines") + ", every seed)", flush=True)
    started = time.time()
    for i, (ref, row) in enumerate(zip(refs, rows), start=1):
        label = f"{row['dataset']} {row['ssl_method']} {row['aug_set']} s{row['seed']:.0f}"
        try:
            metrics = get(ref)
            text = f"FID {metrics[GEN_FID]:.3g} IS {metrics[GEN_IS]:.3g} CAS {metrics[GEN_CAS]:.3f}"
        except Exception as err:  # one failed stage 2 must not lose the others
            text = f"stage 2 failed: {str(err).strip().splitlines()[-1]}"
        eta = (time.time() - started) / i * (len(rows) - i)
        print(f"  [{i}/{len(rows)}] {label}: {text}" + (f"  ETA {eta:.0f} s" if i < len(rows) else ""), flush=True)


def _stage2_task(params: dict, trial_id: str, context) -> dict:
    """Fetch a finished trial's tokenizer from MLflow and run its stage 2 into the same run."""
    if context.simulate:
        from tune.study.simulate import simulated_stage2

        return simulated_stage2(params, context, trial_id=trial_id)
    from tune.study.trial import stage2_of_finished_trial

    return stage2_of_finished_trial(params, context, trial_id)


def _start_ray(plan: StudyPlan, log_to_driver: bool = True):
    """Join plan.address (checked reachable by the plan) or start a local cluster, its dashboard on the
    loopback (Ray 2.60 binds its gRPC servers itself: see benchmarks/listening_sockets.py)."""
    import ray

    if plan.address:
        try:
            return ray.init(address=plan.address, logging_level="WARNING", log_to_driver=log_to_driver)
        except (ConnectionError, RuntimeError, TimeoutError) as err:
            raise UsageError(f"cannot join the Ray cluster at {plan.address} ({_first_line(err)}); if it uses token "
                             f"authentication, put its token in {TOKEN_FILE} or RAY_AUTH_TOKEN and export "
                             f"RAY_AUTH_MODE=token") from None
    try:
        return ray.init(address="local", num_cpus=os.cpu_count(), include_dashboard=True,
                        dashboard_host="127.0.0.1", logging_level="WARNING", log_to_driver=log_to_driver)
    except (ConnectionError, RuntimeError, TimeoutError, OSError, ValueError) as err:
        raise UsageError(f"cannot start a local Ray cluster ({_first_line(err)}); Ray's logs are under "
                         f"{Path(tempfile.gettempdir()) / 'ray'} (a long temp dir breaks its socket paths: "
                         f"set RAY_TMPDIR=/tmp)") from None


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def _dashboard(ctx) -> str | None:
    url = getattr(ctx, "dashboard_url", None)
    if not url:
        return None
    token = TOKEN_FILE.exists() and os.environ.get("RAY_AUTH_MODE") != "disabled"
    return f"http://{url}" + (f" (token authentication: paste the token from {TOKEN_FILE})" if token else "")


def _slots(plan: StudyPlan, resources: dict) -> int:
    """Concurrent trials the cluster holds: its CPUs (or GPUs) divided by one trial's share."""
    slots = int(resources.get("CPU", 1) // plan.cpus_per_trial)
    if plan.gpus_per_trial > 0:
        slots = min(slots, int(resources.get("GPU", 0) // plan.gpus_per_trial))
    return max(1, slots)


def _trial_dirname(trial) -> str:
    return trial.trial_id


def _trial_name(trial) -> str:
    """Tune's name of a trial (its progress tables, Trainable.trial_name): dataset, configuration, seed."""
    return trial_label(trial.config, trial.trial_id)


def _write_report(plan: StudyPlan) -> Path:
    from results.study_report import write_report

    return write_report(plan.name, tracking_uri=plan.tracking_uri, results_dir=plan.results_dir)
