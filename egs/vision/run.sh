#!/usr/bin/env bash
# Vision recipe: image classifiers trained by the ASR recipe's population algorithms (ESGD, ESGD with anchors,
# Population Descent, OpenAI-ES) against a single SGD model. Run from anywhere: egs/vision/run.sh [options]
set -euo pipefail
cd "$(dirname "$0")"
. ../../path.sh

stage=1
stop_stage=100
dataset=digits      # digits (scikit-learn's, no download), mnist, fashion-mnist, cifar10 (need --data-dir)
data_dir=
model_config=conf/cnn.yaml
esgd_config=conf/esgd.yaml
nj=1                # torch threads of each training job
seed=0
help_message="Usage: egs/vision/run.sh [options]
Options:
  --stage <n> --stop-stage <n>  # stages to run (default: $stage-$stop_stage)
  --dataset <name>              # digits (default), mnist, fashion-mnist, cifar10
  --data-dir <dir>              # the dataset's files: idx files (mnist, fashion-mnist) or cifar-10-batches-py
  --model-config <yaml>         # conf/cnn.yaml (default) or conf/resnet20.yaml
  --esgd-config <yaml>          # population settings (default: $esgd_config)
  --nj <n>                      # torch threads per job (default: $nj)
  --seed <n>                    # data split and single model (default: $seed)
Stages:
  1  data         images -> data/task.pt (train / valid / test)
  2  single       single SGD model (new-bob) -> exp/single
  3  populations  population baseline, ESGD, Population Descent, OpenAI-ES -> exp/{population,esgd,popdescent,openai_es}
  4  anchored     ESGD with the single model as anchor -> exp/anchored
  5  table        error-rate table with the budget columns -> exp/results.txt
  6  es-sgd       correlation of the ES and SGD gradients against the batch size at the single model
                  -> exp/es_sgd/correlation.{tsv,png}"
. ../../steps/parse_options.sh

mkdir -p data exp
train() {  # train <exp-name> <esgd-train-task options...>: one job, its log in exp/<name>/log/train.log
  local name=$1; shift
  mkdir -p exp/$name/log
  echo "$(date +%T) training exp/$name"
  esgd-train-task --model-config $model_config --num-threads $nj "$@" data/task.pt exp/$name \
    > exp/$name/log/train.log 2>&1 || { tail -n 5 exp/$name/log/train.log; echo "exp/$name failed"; exit 1; }
  grep "wrote exp/$name/final.pt" exp/$name/log/train.log | sed 's/.*: wrote/  wrote/'
}

if [ $stage -le 1 ] && [ $stop_stage -ge 1 ]; then
  mkdir -p exp/log
  esgd-prepare-images --dataset $dataset ${data_dir:+--data-dir $data_dir} --seed $seed data/task.pt \
    2>&1 | tee exp/log/prepare.log
fi
if [ $stage -le 2 ] && [ $stop_stage -ge 2 ]; then
  train single --algorithm single --seed $seed
fi
if [ $stage -le 3 ] && [ $stop_stage -ge 3 ]; then
  train population --algorithm population --esgd-config $esgd_config
  train esgd --algorithm esgd --esgd-config $esgd_config
  train popdescent --algorithm popdescent --esgd-config $esgd_config
  train openai_es --algorithm openai-es --esgd-config $esgd_config
fi
if [ $stage -le 4 ] && [ $stop_stage -ge 4 ]; then
  train anchored --algorithm anchored --esgd-config $esgd_config --anchor exp/single/final.pt
fi
if [ $stage -le 5 ] && [ $stop_stage -ge 5 ]; then
  esgd-task-table --out exp/results.txt "single SGD model=exp/single" "population baseline=exp/population" \
    "ESGD=exp/esgd" "ESGD, single model as anchor=exp/anchored" "Population Descent=exp/popdescent" \
    "OpenAI-ES=exp/openai_es"
fi
if [ $stage -le 6 ] && [ $stop_stage -ge 6 ]; then
  mkdir -p exp/es_sgd/log
  esgd-es-correlation --model-config $model_config --model exp/single/final.pt --batch-sizes 1,4,16,64,256,1024 \
    --pairs 250 --repeats 2 --seed $seed --num-threads $nj data/task.pt exp/es_sgd > exp/es_sgd/log/correlation.log 2>&1 \
    || { tail -n 5 exp/es_sgd/log/correlation.log; exit 1; }
  cut -f1-3 exp/es_sgd/correlation.tsv
fi
