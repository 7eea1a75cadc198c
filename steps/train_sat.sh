#!/usr/bin/env bash
# Speaker-adaptive training (Kaldi's steps/train_sat.sh) on the LDA+MLLT features of <ali-dir>'s system:
# per-speaker fMLLR transforms from its alignments, then a new tree, initial model and converted alignments on the
# adapted features (as train_deltas.sh), and EM passes with realignment and the transforms re-estimated on a
# schedule (each new estimate composed with the current one). Writes <exp-dir>/{trans.JOB.ark,tree,final.mdl,
# fsts.JOB.ark,ali.JOB.ark,...} and log/ (objf.tsv). The model's front end is <ali-dir>'s (CMVN, splicing,
# final.mat); the transforms apply on top (esgd-* --transforms). --stage continues a stopped run
# (steps/libs/resume.sh).
set -euo pipefail
stage=-4
nj=4
cmd=${train_cmd:-esgd-queue}
num_iters=35
max_iter_inc=25
realign_iters="10 20 30"
fmllr_iters="2 4 6 12"
beam=10
retry_beam=40
power=0.25
seed=0
silence_weight=0.0
fmllr_update_type=full
tree_config=conf/tree.conf
help_message="Usage: $0 [options] <num-leaves> <tot-gauss> <data-dir> <lang-dir> <ali-dir> <exp-dir>
e.g.: $0 --nj 4 2500 15000 data/train data/lang exp/tri2_ali exp/tri3
Options:
  --stage <n>               # continue a stopped run from this step: -4 first transforms, -3 tree statistics,
                            # -2 tree, -1 alignments and graphs, N >= 1 pass N from the stopped run's N.mdl
                            # (default: $stage)
  --nj <n>                  # parallel jobs (default: $nj)
  --cmd <cmd>               # job runner (default: \$train_cmd from cmd.sh)
  --num-iters <n>           # EM passes (default: $num_iters)
  --max-iter-inc <n>        # last pass that adds Gaussians (default: $max_iter_inc)
  --realign-iters <list>    # passes preceded by realignment (default: \"$realign_iters\")
  --fmllr-iters <list>      # passes preceded by re-estimating the speakers' transforms (default: \"$fmllr_iters\")
  --silence-weight <w>      # weight of silence frames in the fMLLR statistics (default: $silence_weight)
  --fmllr-update-type <t>   # full|diag|offset (default: $fmllr_update_type)
  --beam <b>                # alignment beam (default: $beam)
  --retry-beam <b>          # beam of the retry after a failure (default: $retry_beam)
  --power <p>               # exponent of occupancy when allotting Gaussians (default: $power)
  --seed <n>                # seed of the phone clustering and the mixing-up perturbations (default: $seed)
  --tree-config <file>      # build-tree options (default: $tree_config)"
. "$(dirname "$0")/parse_options.sh"
if [ $# -ne 6 ]; then echo "$help_message" >&2; exit 1; fi
numleaves=$1
totgauss=$2
data=$3
lang=$4
alidir=$5
dir=$6
for f in "$data/feats.scp" "$data/text" "$data/utt2spk" "$lang/L.fst" "$lang/phones/roots.int" \
         "$alidir/final.mdl" "$alidir/ali.1.ark" "$alidir/num_jobs" "$tree_config"; do
  [ -f "$f" ] || { echo "$0: no such file: $f" >&2; exit 1; }
done
mkdir -p "$dir/log"
. "$(dirname "$0")/libs/resume.sh"
start_or_resume -4 "$alidir/final.mdl"
rm -f "$dir/final.mdl"
cp "$lang/phones.txt" "$dir/phones.txt"
fmllr_opts=(--silence-weight "$silence_weight" --silence-phones "$lang/phones/silence.int"
            --fmllr-update-type "$fmllr_update_type")
trans="$dir/trans.JOB.ark"

. "$(dirname "$0")/libs/triphone.sh"
# as in Kaldi: on the passes of $fmllr_iters, realign (when due), then the transforms on those alignments, then
# this pass's statistics (the transforms are rewritten in place: kept by pass_state)
update_transforms() {
  in_list "$1" "$fmllr_iters" || return 0
  local j
  pass_state "$1" $(for j in $(seq "$nj"); do echo "$dir/trans.$j.ark"; done)
  if $realigned; then realign "$1" --transforms "$trans"; acc_realign=false; fi
  $cmd JOB=1:"$nj" "$dir/log/fmllr.$1.JOB.log" esgd-fmllr est "${fmllr_opts[@]}" --nj "$nj" --job JOB \
    --alignments "$dir" --transforms "$trans" "$data" "$dir/$1.mdl" "$trans"
}

if [ "$stage" -le -4 ]; then
  echo "$0: fMLLR transforms from the alignments of $alidir"
  $cmd JOB=1:"$nj" "$dir/log/fmllr.0.JOB.log" esgd-fmllr est "${fmllr_opts[@]}" --nj "$nj" --job JOB \
    --alignments "$alidir" "$data" "$alidir/final.mdl" "$trans"
fi
tree_and_first_model --transforms "$trans"
em_passes update_transforms --transforms "$trans"
echo "$0: done: $dir/final.mdl with speaker transforms $dir/trans.*.ark; $(training_summary)"
