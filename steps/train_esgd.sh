#!/usr/bin/env bash
# Train a hybrid DNN or BiLSTM with a population algorithm on the senone alignments of a GMM system: ESGD
# (NeurIPS 2018), ESGD with anchors and iterated anchors (Interspeech 2019), the papers' population baseline and
# ESGD without evolution, Population Descent, OpenAI-ES. Reads the same data as steps/train_nnet.sh; the
# validation set (held-out data dir aligned by the same system) gives the fitness. Settings: conf/esgd.yaml.
# Writes <exp-dir>/{final.pt,final.mdl,checkpoint.pt,history.tsv,history.jsonl,fitness.png,tensorboard/} and
# log/train.log; a checkpoint after every generation, so a killed run continues with --resume true. --nproc N
# (--ngpu N on GPUs) shards the members over N processes on this node, --nnodes M over M nodes (one $cmd task
# each: with ESGD_QUEUE=slurm, ESGD_SRUN_OPTS="--nodes=M --ntasks-per-node=1 ..."; README "Populations on several
# processes").
set -euo pipefail
cmd=${train_cmd:-esgd-queue}
nj=1
algorithm=esgd
esgd_config=conf/esgd.yaml
esgd_preset=
esgd_opts=
model_type=dnn
nnet_config=
preset=default
anchor=
cmvn=false
train_ivectors=
valid_ivectors=
egs=
device=cpu
num_threads=0
resume=false
seed=
nproc=1
ngpu=0
nnodes=1
rdzv_endpoint=
help_message="Usage: $0 [options] <train-data> <train-ali-dir> <valid-data> <valid-ali-dir> <exp-dir>
e.g.: $0 --algorithm anchored --anchor exp/dnn/final.pt data/train exp/tri3_ali data/dev exp/tri3_ali_dev exp/esgd_dnn_anchored
Options:
  --algorithm <name>           # esgd, anchored, iterated, population, no-evolution, popdescent, openai-es
                               # (default: $algorithm)
  --esgd-config <yaml>         # the algorithms' settings (default: $esgd_config)
  --esgd-preset <name[,name]>  # preset(s) of it, merged in order (default: anchors for anchored, iterated for
                               # iterated, else default; e.g. anchors,blstm_batches;
                               # the papers': bn50, swb300, bn50_anchors, bn50_iterated, swb300_anchors, ...)
  --esgd-opts '<k=v ...>'      # overrides, space-separated dotted keys (e.g. 'mu=20 pool.lr_decay=0.8')
  --model-type <dnn|blstm>     # network (default: $model_type)
  --nnet-config <yaml>         # model shapes (default: conf/<model-type>.yaml)
  --preset <name>              # a model preset of it (default: $preset)
  --anchor <file>              # anchor model for anchored / iterated (exp/<dir>/final.pt, a state dict or TorchScript;
                               # or a Kaldi nnet3 text model, whose architecture and input the population takes)
  --cmvn <bool>                # per-speaker CMVN from <data>/cmvn.scp (default: $cmvn)
  --train-ivectors <dir>       # online i-vectors of the training set (BiLSTM input 40 + 100)
  --valid-ivectors <dir>       # online i-vectors of the validation set
  --egs <file>                 # cache of the prepared tensors, shared by runs on the same data (read when newer
                               # than the data, alignments and i-vectors, else made)
  --device <cpu|cuda>          # where training runs (default: $device)
  --num-threads <n>            # torch threads, 0 = torch's default (default: $num_threads)
  --resume <bool>              # continue from <exp-dir>/checkpoint.pt (default: $resume)
  --seed <n>                   # seed of every random draw of the run (default: the setting 'seed' of the config)
  --nproc <n>                  # processes on this node, the members sharded over them (esgd, no-evolution,
                               # population; the run equals one process's) (default: $nproc)
  --ngpu <n>                   # GPUs on this node, one process each: --nproc n --device cuda (default: $ngpu)
  --nnodes <n>                 # nodes, each running --nproc processes (default: $nnodes)
  --rdzv-endpoint <host:port>  # where the nodes meet (default under Slurm: the job's first node, port 29500)
  --nj <n>                     # accepted for uniformity; the population trains in one job (default: $nj)
  --cmd <cmd>                  # job runner (default: \$train_cmd from cmd.sh)"
. "$(dirname "$0")/parse_options.sh"
if [ $# -ne 5 ]; then echo "$help_message" >&2; exit 1; fi
train=$1
train_ali=$2
valid=$3
valid_ali=$4
dir=$5
case "$algorithm" in
  esgd|anchored|iterated|population|no-evolution|popdescent|openai-es) ;;
  *) echo "$0: --algorithm: unknown algorithm '$algorithm' (see --help)" >&2; exit 1 ;;
esac
case "$algorithm" in
  anchored|iterated) [ -n "$anchor" ] || { echo "$0: --algorithm $algorithm needs --anchor <model>" >&2; exit 1; } ;;
  *) [ -z "$anchor" ] || { echo "$0: --anchor is for --algorithm anchored or iterated only" >&2; exit 1; } ;;
esac
[[ "$seed" =~ ^[0-9]*$ ]] || { echo "$0: --seed must be a non-negative integer, got '$seed'" >&2; exit 1; }
for o in nproc nnodes; do
  [[ "${!o}" =~ ^[1-9][0-9]*$ ]] || { echo "$0: --$o must be a positive integer, got '${!o}'" >&2; exit 1; }
done
[[ "$ngpu" =~ ^[0-9]+$ ]] || { echo "$0: --ngpu must be a non-negative integer, got '$ngpu'" >&2; exit 1; }
if [ "$ngpu" -gt 0 ]; then
  [ "$nproc" -eq 1 ] || [ "$nproc" -eq "$ngpu" ] || { echo "$0: --nproc $nproc and --ngpu $ngpu disagree" >&2; exit 1; }
  nproc=$ngpu
  device=cuda
fi
if [ $((nproc * nnodes)) -gt 1 ]; then
  case "$algorithm" in
    esgd|population|no-evolution) ;;
    *) echo "$0: --algorithm $algorithm runs in one process only (--nproc/--ngpu/--nnodes: esgd, population, no-evolution)" >&2; exit 1 ;;
  esac
fi
. "$(dirname "$0")/libs/nnet.sh"
prepare_nnet_dir "$esgd_config" ${anchor:+"$anchor"}
opts=(--algorithm "$algorithm" --esgd-config "$esgd_config" --nnet-config "$nnet_config" --model-type "$model_type"
      --preset "$preset" --cmvn "$cmvn" --device "$device" --num-threads "$num_threads" --resume "$resume")
[ -z "$esgd_preset" ] || opts+=(--esgd-preset "$esgd_preset")
for o in $esgd_opts; do opts+=(--esgd-opt "$o"); done
[ -z "$seed" ] || opts+=(--esgd-opt "seed=$seed")
[ -z "$anchor" ] || opts+=(--anchor "$anchor")
[ -z "$egs" ] || opts+=(--egs "$egs")
[ $((nproc * nnodes)) -eq 1 ] || opts+=(--nproc "$nproc" --nnodes "$nnodes")
[ -z "$rdzv_endpoint" ] || opts+=(--rdzv-endpoint "$rdzv_endpoint")
[ -z "$train_ivectors" ] || opts+=(--train-ivectors "$train_ivectors" --valid-ivectors "$valid_ivectors")
$cmd "$dir/log/train.log" esgd-train-esgd "${opts[@]}" "$train" "$train_ali" "$valid" "$valid_ali" "$dir"
cp "$train_ali/final.mdl" "$dir/final.mdl"  # the GMM system of the senones, once the model is trained
echo "$0: $dir/final.pt: $(grep -o 'validation CE [0-9.]*, frame accuracy [0-9.]* %' "$dir/log/train.log" | tail -n 1) after $(tail -n 1 "$dir/history.tsv" | cut -f1) generations"
