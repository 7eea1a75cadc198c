#!/usr/bin/env bash
# The sweep behind conf/esgd.yaml's openai_es settings: OpenAI-ES on the prepared task (stage 1 of run.sh) for each
# sigma x Adam lr x antithetic pairs, with centred-rank fitness shaping and weight decay as in conf/esgd.yaml, each
# for a shortened run of --updates updates; prints the error-rate table -> exp/es_sweep/results.txt.
# Run from anywhere: egs/vision/local/openai_es_sweep.sh [options]
set -euo pipefail
cd "$(dirname "$0")/.."
. ../../path.sh

sigmas="0.002 0.01 0.05"
lrs="0.001 0.01 0.03"
pairs="100"
updates=100
nj=1
esgd_config=conf/esgd.yaml
model_config=conf/cnn.yaml
help_message="Usage: egs/vision/local/openai_es_sweep.sh [options]   (needs data/task.pt: egs/vision/run.sh --stop-stage 1)
Options:
  --sigmas <list>     # noise standard deviations (default: \"$sigmas\")
  --lrs <list>        # Adam learning rates (default: \"$lrs\")
  --pairs <list>      # antithetic pairs an update (pseudo-offspring / 2; default: \"$pairs\")
  --updates <n>       # updates of each run (default: $updates)
  --nj <n>            # torch threads of each run (default: $nj)"
. ../../steps/parse_options.sh

[ -f data/task.pt ] || { echo "$0: data/task.pt missing: run egs/vision/run.sh --stop-stage 1 first" >&2; exit 1; }
rows=()
for p in $pairs; do
  for s in $sigmas; do
    for lr in $lrs; do
      name=p${p}_sigma${s}_lr${lr}
      mkdir -p exp/es_sweep/$name/log
      esgd-train-task --algorithm openai-es --model-config $model_config --esgd-config $esgd_config \
        --esgd-opt pairs=$p --esgd-opt sigma=$s --esgd-opt lr=$lr --esgd-opt updates_per_generation=$updates \
        --esgd-opt generations=1 --num-threads $nj data/task.pt exp/es_sweep/$name \
        > exp/es_sweep/$name/log/train.log 2>&1 \
        || { tail -n 5 exp/es_sweep/$name/log/train.log; echo "exp/es_sweep/$name failed"; exit 1; }
      rows+=("$name=exp/es_sweep/$name")
    done
  done
done
esgd-task-table --out exp/es_sweep/results.txt "${rows[@]}"
