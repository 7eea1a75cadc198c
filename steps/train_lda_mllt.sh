#!/usr/bin/env bash
# Triphone GMM-HMM training on LDA+MLLT features (Kaldi's steps/train_lda_mllt.sh): LDA of CMVN'd features spliced
# over +-4 frames down to 40 dims, classes = the senones of the previous system's alignments (0.mat); tree,
# initial model and converted alignments as in train_deltas.sh but on the LDA features; EM passes with
# realignment, and MLLT re-estimated on a schedule (the model's front end becomes MLLT . LDA, its means follow).
# The front end (final.mat) lives in the model, so alignment and decoding apply it. Writes <exp-dir>/{0.mat,
# final.mat,tree,questions.int,final.mdl,fsts.JOB.ark,ali.JOB.ark,...} and log/ (objf.tsv). --stage continues a
# stopped run (steps/libs/resume.sh).
set -euo pipefail
stage=-5
nj=4
cmd=${train_cmd:-esgd-queue}
lda_config=conf/lda.conf
tree_config=conf/tree.conf
num_iters=35
mllt_iters="2 4 6 12"
max_iter_inc=25
realign_iters="10 20 30"
beam=10
retry_beam=40
power=0.25
seed=0
help_message="Usage: $0 [options] <num-leaves> <tot-gauss> <data-dir> <lang-dir> <ali-dir> <exp-dir>
e.g.: $0 --nj 4 2500 15000 data/train data/lang exp/tri1_ali exp/tri2
Options:
  --stage <n>            # continue a stopped run from this step: -5 LDA statistics, -4 LDA, -3 tree statistics,
                         # -2 tree, -1 alignments and graphs, N >= 1 pass N from the stopped run's N.mdl
                         # (default: $stage)
  --nj <n>               # parallel jobs (default: $nj)
  --cmd <cmd>            # job runner (default: \$train_cmd from cmd.sh)
  --config <file>        # these options as shell assignments (e.g. conf/tri2.conf)
  --lda-config <file>    # LDA / MLLT options, --name=value lines (default: $lda_config): splicing context, dim,
                         # --silence-weight, MLLT update sweeps
  --tree-config <file>   # build-tree options (default: $tree_config)
  --num-iters <n>        # EM passes (default: $num_iters)
  --mllt-iters <list>    # passes preceded by an MLLT estimate (default: \"$mllt_iters\")
  --max-iter-inc <n>     # last pass that adds Gaussians (default: $max_iter_inc)
  --realign-iters <list> # passes preceded by realignment (default: \"$realign_iters\")
  --beam <b>             # alignment beam (default: $beam)
  --retry-beam <b>       # beam of the retry after a failure (default: $retry_beam)
  --power <p>            # exponent of occupancy when allotting Gaussians (default: $power)
  --seed <n>             # seed of the phone clustering and the mixing-up perturbations (default: $seed)"
. "$(dirname "$0")/parse_options.sh"
if [ $# -ne 6 ]; then echo "$help_message" >&2; exit 1; fi
numleaves=$1
totgauss=$2
data=$3
lang=$4
alidir=$5
dir=$6
for f in "$data/feats.scp" "$data/text" "$lang/L.fst" "$lang/phones/roots.int" "$alidir/final.mdl" \
         "$alidir/ali.1.ark" "$alidir/num_jobs" "$lda_config" "$tree_config"; do
  [ -f "$f" ] || { echo "$0: no such file: $f" >&2; exit 1; }
done
context=$(esgd-recipe-query lda-context "$lda_config") || exit 1
read -r left right <<< "$context"
lda_opts=(--config "$lda_config" --num-iters "$num_iters" --mllt-iters "${mllt_iters// /,}")
mkdir -p "$dir/log"
. "$(dirname "$0")/libs/resume.sh"
start_or_resume -5 "$alidir/final.mdl"
rm -f "$dir/final.mdl" "$dir/final.mat"
cp "$lang/phones.txt" "$dir/phones.txt"

if [ "$stage" -le -5 ]; then
  echo "$0: LDA on spliced features, classes = senones of $alidir"
  $cmd JOB=1:"$nj" "$dir/log/lda_acc.JOB.log" \
    esgd-train-lda-mllt acc-lda "${lda_opts[@]}" --nj "$nj" --job JOB "$data" "$lang" "$alidir" "$dir"
fi
if [ "$stage" -le -4 ]; then
  $cmd "$dir/log/lda_est.log" esgd-train-lda-mllt est-lda "${lda_opts[@]}" --nj "$nj" "$dir"
fi
front_end=(--lda-mat "$dir/0.mat" --left-context "$left" --right-context "$right")
. "$(dirname "$0")/libs/triphone.sh"
# as in Kaldi: on the passes of $mllt_iters, realign (when due), then MLLT on those alignments, then this pass's
# statistics on the new features (est-mllt rewrites $1.mdl: kept by pass_state)
update_mllt() {
  in_list "$1" "$mllt_iters" || return 0
  pass_state "$1" "$dir/$1.mdl"
  if $realigned; then realign "$1"; acc_realign=false; fi
  $cmd JOB=1:"$nj" "$dir/log/mllt_acc.$1.JOB.log" \
    esgd-train-lda-mllt acc-mllt "${lda_opts[@]}" --nj "$nj" --job JOB "$data" "$lang" "$dir" "$1"
  $cmd "$dir/log/mllt_est.$1.log" esgd-train-lda-mllt est-mllt "${lda_opts[@]}" --nj "$nj" "$dir" "$1"
}

tree_and_first_model "${front_end[@]}" -- "${front_end[@]}"
em_passes update_mllt
cur_mat=$(ls "$dir"/[0-9]*.mat | sed 's|.*/||; s|\.mat$||' | sort -n | tail -n 1)
(cd "$dir" && ln -sf "$cur_mat.mat" final.mat)
echo "$0: done: $dir/final.mdl (front end $dir/final.mat); $(training_summary)"
