#!/usr/bin/env bash
# The checks that need an NVIDIA GPU, in one run of under 10 minutes:
#
#   OUT=/some/dir bash benchmarks/gpu_check.sh          # default OUT=./gpu_out
#
# Three parts, each time-boxed so that one slow part cannot eat the others' time:
#   tests  pytest -m cuda: tests/test_cuda.py (all of tests/ when Ray, Optuna, MLflow and aeon import)
#   speed  benchmarks/stage1_speed.py at the reference size (projector 4096; bf16 autocast for none,
#          barlowtwins+warp and vibcreg+warp, fp32 for barlowtwins+warp) on FordA and ECG5000 from a UCR
#          root ($UCR_ROOT, $UCR_ARCHIVE_DIR, gpu_data/ucr, shared/ucr or ../shared/ucr), else on GunPoint
#          and ACSF1 as stand-ins (from such a root, or aeon's bundled copies)
#   study  a packed study: tune/run_ablation.py --space aug_weight --budget smoke --gpus-per-trial 0.25
#          --stage2 best on GunPoint and ItalyPowerDemand: trials per hour and mean GPU utilisation
# Python: $PYTHON; else .venv/bin/python if its torch sees the GPU; else python3 if its torch does (the
# project is then used from this folder through PYTHONPATH, and wheels in .whl/ are installed beside it);
# else a new .venv (python3 -m venv; pip install torch==2.13.0; pip install -e .[dev]), which needs PyPI.
# Writes OUT/summary.md (tables, then the raw results as JSON) after every part, beside the parts' logs
# (gpu_check.log, pytest.log, speed.log, study.log). Exit 0 when every part that ran passed, 1 otherwise.
# Time: BUDGET_S (default 570) for everything; T_TESTS (120), T_SPEED (180), T_STUDY (240) cap the parts
# (0 skips one). STUDY_SAMPLES (4) and STUDY_STAGE2 (best) size the study; SPEED_DEVICE=cpu (and a stand-in
# nvidia-smi on PATH) dry-runs the script's plumbing on a machine without a GPU.
set -uo pipefail

cd "$(dirname "$0")/.." || exit 2
REPO=$PWD
OUT=${OUT:-$REPO/gpu_out}
mkdir -p "$OUT" && OUT=$(cd "$OUT" && pwd) || exit 2
WORK=$(mktemp -d "${TMPDIR:-/tmp}/gpu_check.XXXXXX") || exit 2
START=$(date +%s)
BUDGET_S=${BUDGET_S:-570}
FAILED=0
PY=""
: >"$OUT/gpu_check.log"

log() { printf '[gpu_check %s] %s\n' "$(date +%H:%M:%S)" "$*" | tee -a "$OUT/gpu_check.log"; }
since() { echo $(($(date +%s) - $1)); }
# box CAP: the seconds a part may take: CAP, or what is left of the budget less 20 s for the summary
box() { local left=$((BUDGET_S - $(since "$START") - 20)); if ((left < $1)); then echo "$left"; else echo "$1"; fi; }
# boxed CAP COMMAND...: COMMAND under timeout for box CAP seconds; 125 without running it when under 10 s are left
boxed() {
    local t
    t=$(box "$1")
    shift
    ((t >= 10)) || return 125
    timeout -k 10 "$t" "$@"
}

summary() {
    if [ -n "$PY" ] && "$PY" benchmarks/gpu_check.py summary --work "$WORK" --out "$OUT" >/dev/null 2>>"$OUT/gpu_check.log"; then
        return
    fi
    { printf '# GPU check\n\n| part | status | seconds | note |\n|---|---|---|---|\n'
      sed 's/\t/ | /g; s/^/| /; s/$/ |/' "$WORK/parts.tsv" 2>/dev/null; } >"$OUT/summary.md"
}
# part NAME STATUS SECONDS NOTE: record a part's outcome (failed and timeout fail the check) and rewrite the summary
part() {
    printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" >>"$WORK/parts.tsv"
    log "$1: $2 after $3 s. $4"
    case $2 in failed | timeout) FAILED=1 ;; esac
    summary
}
finish() {
    summary
    echo
    sed '/^```json/,$d' "$OUT/summary.md"
    echo "(full summary with the raw JSON: $OUT/summary.md)"
    rm -rf "$WORK"
    exit "$FAILED"
}
outcome() { case $1 in 0) echo ok ;; 124 | 137) echo timeout ;; 125) echo "skipped (no time left)" ;; *) echo failed ;; esac; }

# ---- the GPU ----------------------------------------------------------------------------------------
if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L >"$WORK/gpus.txt" 2>&1; then
    part gpu failed 0 "nvidia-smi is missing or lists no GPU: nothing here can be checked"
    finish
fi
log "GPUs: $(tr '\n' ' ' <"$WORK/gpus.txt")"

# ---- Python -----------------------------------------------------------------------------------------
sees_gpu() { "$1" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' >/dev/null 2>&1; }
t0=$(date +%s)
if [ -n "${PYTHON:-}" ]; then
    PY=$PYTHON
    how="\$PYTHON"
elif [ -x .venv/bin/python ] && sees_gpu .venv/bin/python; then
    PY=.venv/bin/python
    how="the existing .venv"
elif command -v python3 >/dev/null 2>&1 && sees_gpu python3; then
    PY=python3
    how="python3 with its own torch; the project from this folder (PYTHONPATH), not pip-installed"
    if compgen -G ".whl/*.whl" >/dev/null; then
        if python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$WORK/site" \
            .whl/*.whl >>"$OUT/gpu_check.log" 2>&1; then
            export PYTHONPATH="$WORK/site${PYTHONPATH:+:$PYTHONPATH}"
            how="$how; wheels from .whl/"
        else
            how="$how; the wheels in .whl/ did not install (see gpu_check.log)"
        fi
    fi
else
    log "no Python whose torch sees the GPU: making .venv (needs PyPI; at most $(box 240) s)"
    if boxed 240 bash -c 'python3 -m venv .venv && .venv/bin/pip install -q torch==2.13.0 &&
            .venv/bin/pip install -q -e ".[dev]"' >>"$OUT/gpu_check.log" 2>&1 && sees_gpu .venv/bin/python; then
        PY=.venv/bin/python
        how="a new .venv"
    else
        part setup failed "$(since "$t0")" "could not make a Python whose torch sees the GPU (no PyPI here?); set PYTHON"
        PY=""
        finish
    fi
fi
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 MLFLOW_DISABLE_TELEMETRY=true \
    RAY_USAGE_STATS_ENABLED=0
"$PY" benchmarks/gpu_check.py env >"$WORK/env.json" 2>>"$OUT/gpu_check.log"
MISSING=$("$PY" -c 'import json, sys; print(" ".join(json.load(open(sys.argv[1]))["missing"]))' "$WORK/env.json" 2>/dev/null)
have() { [[ " $MISSING " != *" $1 "* ]]; }
part setup ok "$(since "$t0")" "Python: $PY ($how); not importable: ${MISSING:-none}"

# ---- where the data come from ----------------------------------------------------------------------
root_with() {   # root_with NAME...: the first UCR root that holds every NAME
    local d n
    for d in "${UCR_ROOT:-}" "${UCR_ARCHIVE_DIR:-}" gpu_data/ucr shared/ucr ../shared/ucr; do
        [ -n "$d" ] || continue
        for n in "$@"; do [ -f "$d/$n/${n}_TRAIN.tsv" ] || continue 2; done
        (cd "$d" && pwd)
        return 0
    done
    return 1
}

# ---- tests ------------------------------------------------------------------------------------------
t0=$(date +%s)
tests=tests/test_cuda.py
if have ray && have optuna && have mlflow && have aeon; then tests=tests; fi
boxed "${T_TESTS:-120}" "$PY" -m pytest -q -p no:cacheprovider -m cuda -rfEX \
    --junitxml="$WORK/junit.xml" "$tests" >"$OUT/pytest.log" 2>&1
rc=$?
part tests "$(outcome $rc)" "$(since "$t0")" "pytest -m cuda $tests: $(tail -n 1 "$OUT/pytest.log")"

# ---- stage-1 speed ----------------------------------------------------------------------------------
t0=$(date +%s)
if root=$(root_with FordA ECG5000); then
    sets="FordA ECG5000" source="the UCR root $root"
elif root=$(root_with GunPoint ACSF1); then
    sets="GunPoint ACSF1" source="stand-ins for FordA and ECG5000 (no UCR root holds them), from $root"
elif have aeon; then
    root="" sets="GunPoint ACSF1" source="stand-ins for FordA and ECG5000 (no UCR root holds them), aeon's bundled copies"
else
    sets="" source=""
fi
if [ -z "$sets" ]; then
    part speed skipped 0 "no data: no UCR root with FordA or GunPoint, and aeon is missing (carry gpu_data/ucr)"
else
    : >"$OUT/speed.log"
    status=ok
    cap=$(box "${T_SPEED:-180}")
    for ds in $sets; do
        args=(--dataset "$ds" --projector-dim 4096 --epochs 3 --min-seconds "${SPEED_MIN_S:-4}" --threads 4
              --device "${SPEED_DEVICE:-cuda}")
        [ -n "$root" ] && args+=(--ucr-root "$root")
        per=$((cap / 2))
        boxed $((per * 7 / 10)) "$PY" benchmarks/stage1_speed.py "${args[@]}" --precision auto \
            --configs none barlowtwins+warp vibcreg+warp --json "$WORK/speed_${ds}_auto.json" >>"$OUT/speed.log" 2>&1
        rc=$?
        [ $rc -ne 0 ] && status=$(outcome $rc) && log "speed $ds (auto): $status"
        boxed $((per * 3 / 10)) "$PY" benchmarks/stage1_speed.py "${args[@]}" --precision fp32 \
            --configs barlowtwins+warp --json "$WORK/speed_${ds}_fp32.json" >>"$OUT/speed.log" 2>&1
        rc=$?
        [ $rc -ne 0 ] && status=$(outcome $rc) && log "speed $ds (fp32): $status"
    done
    part speed "$status" "$(since "$t0")" "$sets: $source"
fi

# ---- packed study -----------------------------------------------------------------------------------
t0=$(date +%s)
study_sets=GunPoint,ItalyPowerDemand
if ! (have ray && have optuna && have mlflow); then
    part study skipped 0 "Ray, Optuna or MLflow is not importable (missing: $MISSING): use a venv with the project installed"
elif ! root=$(root_with GunPoint ItalyPowerDemand) && ! have aeon; then
    part study skipped 0 "no data: no UCR root with GunPoint and ItalyPowerDemand, and aeon is missing"
else
    rootargs=()
    [ -n "${root:-}" ] && rootargs=(--ucr-root "$root")
    nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used --format=csv,noheader,nounits -lms 500 \
        >"$WORK/study_util.csv" 2>/dev/null &
    smi=$!
    boxed "${T_STUDY:-240}" "$PY" tune/run_ablation.py --space aug_weight --budget smoke \
        --gpus-per-trial 0.25 --datasets "$study_sets" --num-samples "${STUDY_SAMPLES:-4}" \
        --stage2 "${STUDY_STAGE2:-best}" --results-dir "$WORK/study" --name gpu-check --no-report \
        "${rootargs[@]}" >"$OUT/study.log" 2>&1
    rc=$?
    wall=$(since "$t0")
    kill "$smi" 2>/dev/null
    wait "$smi" 2>/dev/null
    if [ $rc -ne 125 ]; then
        "$PY" benchmarks/gpu_check.py study --results-dir "$WORK/study" --name gpu-check \
            --util "$WORK/study_util.csv" --wall "$wall" >"$WORK/study.json" 2>>"$OUT/study.log"
    fi
    part study "$(outcome $rc)" "$wall" "$study_sets, ${STUDY_SAMPLES:-4} configurations each, --stage2 ${STUDY_STAGE2:-best}${root:+, from $root}"
fi

finish
