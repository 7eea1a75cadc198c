#!/usr/bin/env bash
# Triphone GMM-HMM training on delta features (Kaldi's steps/train_deltas.sh): tree statistics from the previous
# system's alignments, questions by clustering phones, a decision tree with <num-leaves> leaves (senones), one
# Gaussian per leaf, the alignments converted to the new model, then EM passes with realignment on a schedule and
# mixing up to <tot-gauss> Gaussians. Writes <exp-dir>/{tree,questions.int,treeacc,1..N.mdl,final.mdl,
# fsts.JOB.ark,fsts_tids.JOB.ark,ali.JOB.ark,phones.txt,num_jobs} and log/ (objf.tsv: log-likelihood per frame).
# --stage continues a stopped run (steps/libs/resume.sh).
set -euo pipefail
stage=-3
nj=4
cmd=${train_cmd:-esgd-queue}
num_iters=35
max_iter_inc=25
realign_iters="10 20 30"
beam=10
retry_beam=40
power=0.25
seed=0
tree_config=conf/tree.conf
help_message="Usage: $0 [options] <num-leaves> <tot-gauss> <data-dir> <lang-dir> <ali-dir> <exp-dir>
e.g.: $0 --nj 4 2000 10000 data/train data/lang exp/mono_ali exp/tri1
<ali-dir> holds the previous system's final.mdl and ali.*.ark (steps/align_si.sh).
Options:
  --stage <n>            # continue a stopped run from this step: -3 tree statistics, -2 tree,
                         # -1 alignments and graphs, N >= 1 pass N from the stopped run's N.mdl (default: $stage)
  --nj <n>               # parallel jobs (default: $nj)
  --cmd <cmd>            # job runner (default: \$train_cmd from cmd.sh)
  --num-iters <n>        # EM passes (default: $num_iters)
  --max-iter-inc <n>     # last pass that adds Gaussians (default: $max_iter_inc)
  --realign-iters <list> # passes preceded by realignment (default: \"$realign_iters\")
  --beam <b>             # alignment beam (default: $beam)
  --retry-beam <b>       # beam of the retry after a failure (default: $retry_beam)
  --power <p>            # exponent of occupancy when allotting Gaussians (default: $power)
  --seed <n>             # seed of the phone clustering and the mixing-up perturbations (default: $seed)
  --tree-config <file>   # build-tree options, --name=value lines (default: $tree_config)"
. "$(dirname "$0")/parse_options.sh"
if [ $# -ne 6 ]; then echo "$help_message" >&2; exit 1; fi
numleaves=$1
totgauss=$2
data=$3
lang=$4
alidir=$5
dir=$6
for f in "$data/feats.scp" "$data/text" "$lang/L.fst" "$lang/phones/roots.int" "$lang/phones/sets.int" \
         "$alidir/final.mdl" "$alidir/ali.1.ark" "$tree_config"; do
  [ -f "$f" ] || { echo "$0: no such file: $f" >&2; exit 1; }
done
mkdir -p "$dir/log"
. "$(dirname "$0")/libs/resume.sh"
start_or_resume -3 "$alidir/final.mdl"
rm -f "$dir/final.mdl"
cp "$lang/phones.txt" "$dir/phones.txt"

. "$(dirname "$0")/libs/triphone.sh"
tree_and_first_model
em_passes true
echo "$0: done: $dir/final.mdl; $(training_summary) (see $dir/log/acc.*.log)"
