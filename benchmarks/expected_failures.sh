#!/usr/bin/env bash
# Every expected failure of the entry points, as a table row: case, exit code, stderr lines, seconds, message.
# bash benchmarks/expected_failures.sh   (nothing is written outside a temp dir; no Ray cluster starts)
cd "$(dirname "$0")/.."
PY=.venv/bin/python
T=$(mktemp -d); R=$T/results
mkdir -p $R; echo "not a dir" > $T/file
echo "text" > $T/notes.txt
$PY -c "import torch; torch.save({'x': 1}, '$T/dict.pt')"
run() { local name="$1"; shift; local t0=$(date +%s.%N); "$@" > $T/out 2> $T/err; local rc=$?; local t1=$(date +%s.%N);
  printf "| %s | %s | %s | %.1f | %s |\n" "$name" "$rc" "$(grep -c . $T/err)" "$(awk "BEGIN{print $t1 - $t0}")" "$(tail -1 $T/err | cut -c1-150)"; }
S="$PY tune/run_ablation.py --results-dir $R --datasets GunPoint"
run "--set lr=-1 --dry-run" $S --space aug_weight --set lr=-1 --dry-run
run "--set device=tpu --dry-run" $S --space aug_weight --set device=tpu --dry-run
run "--set tokenizer.codebook_size=0 --dry-run" $S --space aug_weight --set tokenizer.codebook_size=0 --dry-run
run "--mlflow-uri bogus://x" $S --space aug_weight --mlflow-uri bogus://x
run "sqlite store under a regular file" $S --space aug_weight --mlflow-uri sqlite:///$T/file/m.db
run "--mlflow-uri http://127.0.0.1:1" $S --space aug_weight --mlflow-uri http://127.0.0.1:1
run "--gpus-per-trial 2 (no GPU)" $S --space aug_weight --gpus-per-trial 2
run "--name ../../x" $S --space aug_weight --name ../../x
run "--address 127.0.0.1:1" $S --space aug_weight --address 127.0.0.1:1
run "train_one --json into a missing folder" $PY -m tune.train_one --dataset ItalyPowerDemand --json $T/nodir/m.json
run "report on a file that is not an MLflow store" $PY results/report.py --study x --mlflow-uri sqlite:///$T/notes.txt
run "generate_one --checkpoint a text file" $PY -m tune.generate_one --checkpoint $T/notes.txt
run "generate_one --checkpoint a dict without a model" $PY -m tune.generate_one --checkpoint $T/dict.pt
echo "files written to the results dir: $(ls -A $R | wc -l)"; rm -rf $T
