#!/usr/bin/env bash
# Fine-tune a hybrid model (the last step of ESGD's Algorithm 1 on its own): Kf epochs of plain SGD with a small
# learning rate; whenever the validation cross-entropy rises, back off to the previous epoch and halve the rate.
# The model is a file of ours (or an exp dir holding final.pt), a bare state dict or a TorchScript module whose
# architecture is that of --nnet-config / --preset. The ESGD family's runs (steps/train_esgd.sh) fine-tune their
# whole last population themselves (finetune section of conf/esgd.yaml); this step serves any single model, e.g.
# the single-model baseline given the same extra epochs. Runs steps/train_nnet.sh with --init-model, so it
# checkpoints every epoch and continues with --resume true; writes <exp-dir>/final.pt and final.mdl.
set -euo pipefail
cmd=${train_cmd:-esgd-queue}
nj=1
epochs=5
epoch_frames=
lr=0.02
batch_size=128
min_lr=1e-6
model_type=dnn
nnet_config=
preset=default
cmvn=false
train_ivectors=
valid_ivectors=
seed=0
device=cpu
num_threads=0
resume=false
help_message="Usage: $0 [options] <model-or-exp-dir> <train-data> <train-ali-dir> <valid-data> <valid-ali-dir> <exp-dir>
e.g.: $0 --epochs 5 --lr 0.02 exp/dnn data/train exp/tri3_ali data/dev exp/tri3_ali_dev exp/dnn_ft
Options:
  --epochs <n>                 # Kf, fine-tuning epochs at most (default: $epochs)
  --epoch-frames <n>           # frames of one epoch, drawn afresh each epoch (default: the whole training set)
  --lr <f>                     # the small initial learning rate, halved at every back-off (default: $lr)
  --batch-size <n>             # mini-batch (default: $batch_size)
  --min-lr <f>                 # stop when the learning rate falls below this (default: $min_lr)
  --model-type <dnn|blstm>     # network (default: $model_type)
  --nnet-config <yaml>         # the model's shape (default: conf/<model-type>.yaml)
  --preset <name>              # a model preset of it (default: $preset)
  --cmvn <bool>                # per-speaker CMVN from <data>/cmvn.scp (default: $cmvn)
  --train-ivectors <dir>       # online i-vectors of the training set
  --valid-ivectors <dir>       # online i-vectors of the validation set
  --seed <n>                   # shuffling seed (default: $seed)
  --device <cpu|cuda>          # where training runs (default: $device)
  --num-threads <n>            # torch threads, 0 = torch's default (default: $num_threads)
  --resume <bool>              # continue from <exp-dir>/checkpoint.pt (default: $resume)
  --nj <n>                     # accepted for uniformity; fine-tuning is one job (default: $nj)
  --cmd <cmd>                  # job runner (default: \$train_cmd from cmd.sh)"
. "$(dirname "$0")/parse_options.sh"
if [ $# -ne 6 ]; then echo "$help_message" >&2; exit 1; fi
model=$1
shift
[ ! -d "$model" ] || model=$model/final.pt
[ -f "$model" ] || { echo "$0: no such file: $model" >&2; exit 1; }
[ "$epochs" -ge 1 ] 2>/dev/null || { echo "$0: --epochs must be a positive integer, got '$epochs'" >&2; exit 1; }
opts=(--cmd "$cmd" --model-type "$model_type" --preset "$preset" --lr "$lr" --batch-size "$batch_size"
      --max-epochs "$epochs" --min-lr "$min_lr" --cmvn "$cmvn" --seed "$seed" --device "$device"
      --num-threads "$num_threads" --resume "$resume" --init-model "$model")
[ -z "$nnet_config" ] || opts+=(--nnet-config "$nnet_config")
[ -z "$epoch_frames" ] || opts+=(--epoch-frames "$epoch_frames")
[ -z "$train_ivectors" ] || opts+=(--train-ivectors "$train_ivectors")
[ -z "$valid_ivectors" ] || opts+=(--valid-ivectors "$valid_ivectors")
"$(dirname "$0")/train_nnet.sh" "${opts[@]}" "$@"
