#!/usr/bin/env bash
# LM recipe: an LSTM language model, single (new-bob) and ESGD with the baseline always inserted (back-off
# probability 0.7), on the population engine of the ASR recipe. Run from anywhere: egs/lm/run.sh [options]
set -euo pipefail
cd "$(dirname "$0")"
. ../../path.sh

stage=1
stop_stage=100
ptb_dir=            # directory of ptb.{train,valid,test}.txt; empty: the default corpus' text
data_root=../../data  # the ASR recipe's data dir: train/text, dev/text, test/text
tokenizer=word      # word or sentencepiece
vocab_size=         # tokens (word: default every training word; sentencepiece: needed)
bptt=35
model_config=conf/lstm.yaml
preset=default      # model preset: default or ptb
esgd_config=conf/esgd.yaml
nj=1                # torch threads of each training job
seed=0
help_message="Usage: egs/lm/run.sh [options]
Options:
  --stage <n> --stop-stage <n>  # stages to run (default: $stage-$stop_stage)
  --ptb-dir <dir>               # PTB (ptb.train.txt, ptb.valid.txt, ptb.test.txt); default: the default
                                # corpus' text ($data_root/{train,dev,test}/text, or the corpus planner's)
  --tokenizer <word|sentencepiece> --vocab-size <n> --bptt <n>
  --preset <name>               # model preset of $model_config: default, ptb (the paper's 1 x 655 LSTM)
  --nj <n>                      # torch threads per job (default: $nj)
Stages:
  1  text      sentences -> tokens -> data/task.pt
  2  single    single LSTM LM (new-bob) -> exp/single
  3  esgd      ESGD, the single model always inserted, back-off probability 0.7 -> exp/esgd_inserted
  4  table     perplexity table with the budget columns -> exp/results.txt"
. ../../steps/parse_options.sh

mkdir -p data exp
train() {  # train <exp-name> <esgd-train-task options...>: one job, its log in exp/<name>/log/train.log
  local name=$1; shift
  mkdir -p exp/$name/log
  echo "$(date +%T) training exp/$name"
  esgd-train-task --model-config $model_config --preset $preset --num-threads $nj "$@" data/task.pt exp/$name \
    > exp/$name/log/train.log 2>&1 || { tail -n 5 exp/$name/log/train.log; echo "exp/$name failed"; exit 1; }
  grep "wrote exp/$name/final.pt" exp/$name/log/train.log | sed 's/.*: wrote/  wrote/'
}

if [ $stage -le 1 ] && [ $stop_stage -ge 1 ]; then
  mkdir -p exp/log
  esgd-prepare-lm-text ${ptb_dir:+--ptb-dir $ptb_dir} --data-root $data_root --tokenizer $tokenizer \
    ${vocab_size:+--vocab-size $vocab_size} --bptt $bptt --seed $seed data/task.pt 2>&1 | tee exp/log/prepare.log
fi
if [ $stage -le 2 ] && [ $stop_stage -ge 2 ]; then
  train single --algorithm single --seed $seed
fi
if [ $stage -le 3 ] && [ $stop_stage -ge 3 ]; then
  train esgd_inserted --algorithm inserted --esgd-config $esgd_config --anchor exp/single/final.pt
fi
if [ $stage -le 4 ] && [ $stop_stage -ge 4 ]; then
  esgd-task-table --out exp/results.txt "single model=exp/single" \
    "ESGD, baseline inserted, back-off p 0.7=exp/esgd_inserted"
fi
