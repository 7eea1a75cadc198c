#!/usr/bin/env bash
# Train a hybrid DNN or BiLSTM on the senone alignments of a GMM system: the single-model baseline of the
# papers (plain SGD, batch 128, Kaldi's new-bob schedule: back off and halve the learning rate whenever the
# validation cross-entropy rises). The validation set is a held-out data dir aligned by the same system.
# Writes <exp-dir>/{final.pt,final.mdl,checkpoint.pt,history.tsv,training.png,tensorboard/} and log/train.log;
# final.mdl is the GMM system's (its transition model and tree map the network's senones onto the graph).
set -euo pipefail
cmd=${train_cmd:-esgd-queue}
nj=1
model_type=dnn
nnet_config=
preset=default
lr=
batch_size=
max_epochs=
epoch_frames=
min_lr=
cmvn=false
train_ivectors=
valid_ivectors=
init_model=
seed=0
device=cpu
resume=false
num_threads=1
help_message="Usage: $0 [options] <train-data> <train-ali-dir> <valid-data> <valid-ali-dir> <exp-dir>
e.g.: $0 --model-type dnn data/train_fmllr exp/tri3_ali data/dev_fmllr exp/tri3_ali_dev exp/dnn
Options:
  --model-type <dnn|blstm>     # network (default: $model_type)
  --nnet-config <yaml>         # model shapes and schedule (default: conf/<model-type>.yaml)
  --preset <name>              # a preset of the config (e.g. bn50, swb300; default: $preset)
  --lr <f>                     # initial learning rate (default: the config's train section)
  --batch-size <n>             # mini-batch (default: the config's, 128)
  --max-epochs <n>             # epochs at most (default: the config's)
  --epoch-frames <n>           # frames of one epoch, drawn afresh each epoch (default: the whole training set)
  --min-lr <f>                 # stop when the learning rate falls below this (default: the config's)
  --cmvn <bool>                # per-speaker CMVN from <data>/cmvn.scp (default: $cmvn)
  --train-ivectors <dir>       # online i-vectors of the training set (BiLSTM input 40 + 100)
  --valid-ivectors <dir>       # online i-vectors of the validation set
  --init-model <file>          # start from this model (ours or TorchScript) instead of a random one
  --seed <n>                   # initialisation and shuffling seed (default: $seed)
  --device <cpu|cuda>          # where training runs (default: $device)
  --num-threads <n>            # torch threads; more than 1 slows down badly on a loaded machine (default: $num_threads)
  --resume <bool>              # continue from <exp-dir>/checkpoint.pt (default: $resume)
  --nj <n>                     # accepted for uniformity; training is one job (default: $nj)
  --cmd <cmd>                  # job runner (default: \$train_cmd from cmd.sh)"
. "$(dirname "$0")/parse_options.sh"
if [ $# -ne 5 ]; then echo "$help_message" >&2; exit 1; fi
train=$1
train_ali=$2
valid=$3
valid_ali=$4
dir=$5
. "$(dirname "$0")/libs/nnet.sh"
prepare_nnet_dir
opts=(--nnet-config "$nnet_config" --model-type "$model_type" --preset "$preset" --cmvn "$cmvn" --seed "$seed"
      --device "$device" --num-threads "$num_threads" --resume "$resume")
[ -z "$lr" ] || opts+=(--lr "$lr")
[ -z "$batch_size" ] || opts+=(--batch-size "$batch_size")
[ -z "$max_epochs" ] || opts+=(--max-epochs "$max_epochs")
[ -z "$epoch_frames" ] || opts+=(--epoch-frames "$epoch_frames")
[ -z "$min_lr" ] || opts+=(--min-lr "$min_lr")
[ -z "$train_ivectors" ] || opts+=(--train-ivectors "$train_ivectors" --valid-ivectors "$valid_ivectors")
[ -z "$init_model" ] || opts+=(--init-model "$init_model")
$cmd "$dir/log/train.log" esgd-train-nnet "${opts[@]}" "$train" "$train_ali" "$valid" "$valid_ali" "$dir"
cp "$train_ali/final.mdl" "$dir/final.mdl"  # the GMM system of the senones, once the model is trained
echo "$0: $dir/final.pt: $(tail -n 1 "$dir/history.tsv" | awk '{printf "validation CE %s, frame accuracy %.2f %% after %s epochs", $2, 100 * $3, $1}')"
