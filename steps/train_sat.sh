#!/usr/bin/env bash
# Speaker-adaptive training (Kaldi's steps/train_sat.sh) on the LDA+MLLT features of <ali-dir>'s system:
# per-speaker fMLLR transforms from its alignments, then a new tree, initial model and converted alignments on the
# adapted features (as train_deltas.sh), and EM passes with realignment and the transforms re-estimated on a
# schedule (each new estimate composed with the current one). Writes <exp-dir>/{trans.JOB.ark,tree,final.mdl,
# fsts.JOB.ark,ali.JOB.ark,...} and log/ (objf.tsv). The model's front end is <ali-dir>'s (CMVN, splicing,
# final.mat); the transforms apply on top (esgd-* --transforms).
set -euo pipefail
nj=4
cmd=${train_cmd:-esgd-queue}
num_iters=35
max_iter_inc=25
realign_iters="10 20 30"
fmllr_iters="2 4 6 12"
beam=10
retry_beam=40
power=0.25
silence_weight=0.0
fmllr_update_type=full
tree_config=conf/tree.conf
help_message="Usage: $0 [options] <num-leaves> <tot-gauss> <data-dir> <lang-dir> <ali-dir> <exp-dir>
e.g.: $0 --nj 4 2500 15000 data/train data/lang exp/tri2_ali exp/tri3
Options:
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
echo "$nj" > "$dir/num_jobs"
rm -f "$dir/final.mdl"
cp "$lang/phones.txt" "$dir/phones.txt"
fmllr_opts=(--silence-weight "$silence_weight" --silence-phones "$lang/phones/silence.int"
            --fmllr-update-type "$fmllr_update_type")
trans="$dir/trans.JOB.ark"

echo "$0: fMLLR transforms from the alignments of $alidir"
$cmd JOB=1:"$nj" "$dir/log/fmllr.0.JOB.log" esgd-fmllr est "${fmllr_opts[@]}" --nj "$nj" --job JOB \
  --alignments "$alidir" "$data" "$alidir/final.mdl" "$trans"
echo "$0: accumulating tree statistics on the adapted features"
$cmd JOB=1:"$nj" "$dir/log/acc_tree.JOB.log" \
  esgd-train-tree acc --nj "$nj" --job JOB --transforms "$trans" "$data" "$lang" "$alidir" "$dir"
echo "$0: building the tree ($numleaves leaves) and the initial model"
$cmd "$dir/log/build_tree.log" esgd-train-tree build --nj "$nj" --tree-config "$tree_config" \
  --num-leaves "$numleaves" "$lang" "$alidir" "$dir"
$cmd JOB=1:"$nj" "$dir/log/convert_ali.JOB.log" esgd-train-tree convert-ali --nj "$nj" --job JOB "$data" "$alidir" "$dir"
$cmd JOB=1:"$nj" "$dir/log/compile_graphs.JOB.log" \
  esgd-align compile-graphs --nj "$nj" --job JOB "$data" "$lang" "$dir/1.mdl" "$dir"

numgauss=$(esgd-gmm-train info "$dir/1.mdl" | awk '$1 == "number-of-pdfs" {print $2}')
incgauss=$(( (totgauss - numgauss) / max_iter_inc ))
[ "$incgauss" -ge 0 ] || incgauss=0
x=1
while [ "$x" -lt "$num_iters" ]; do
  echo "$0: pass $x"
  realigned=false
  if echo " $realign_iters " | grep -q " $x "; then realigned=true; fi
  acc_realign=$realigned
  if echo " $fmllr_iters " | grep -q " $x "; then
    # as in Kaldi: realign, then the transforms on those alignments, then this pass's statistics
    if $realigned; then
      $cmd JOB=1:"$nj" "$dir/log/align.$x.JOB.log" esgd-align align --nj "$nj" --job JOB --beam "$beam" \
        --retry-beam "$retry_beam" --transforms "$trans" "$data" "$dir/$x.mdl" "$dir"
      acc_realign=false
    fi
    $cmd JOB=1:"$nj" "$dir/log/fmllr.$x.JOB.log" esgd-fmllr est "${fmllr_opts[@]}" --nj "$nj" --job JOB \
      --alignments "$dir" --transforms "$trans" "$data" "$dir/$x.mdl" "$trans"
  fi
  $cmd JOB=1:"$nj" "$dir/log/acc.$x.JOB.log" esgd-gmm-train acc --nj "$nj" --job JOB --realign "$acc_realign" \
    --beam "$beam" --retry-beam "$retry_beam" --transforms "$trans" "$data" "$dir" "$x"
  $cmd "$dir/log/update.$x.log" esgd-gmm-train est --nj "$nj" --first-iter 1 --mix-up "$numgauss" \
    --power "$power" --realigned "$realigned" "$dir" "$x"
  [ "$x" -le "$max_iter_inc" ] && numgauss=$((numgauss + incgauss))
  x=$((x + 1))
done
(cd "$dir" && ln -sf "$x.mdl" final.mdl)

failed=$(cat "$dir"/log/acc.*.log "$dir"/log/align.*.log 2>/dev/null | grep -c "not aligned:" || true)
echo "$0: done: $dir/final.mdl with speaker transforms $dir/trans.*.ark; $(tail -n 1 "$dir/log/objf.tsv" | awk '{print "last pass log-likelihood per frame " $3 ", " $5 " Gaussians"}'); $failed alignment failures over all passes"
