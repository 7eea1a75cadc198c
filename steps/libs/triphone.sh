# The steps shared by the triphone trainers (train_deltas.sh, train_lda_mllt.sh, train_sat.sh), sourced after
# their option parsing and steps/libs/resume.sh. The functions read the caller's settings: $stage $cmd $nj $data
# $lang $alidir $dir $numleaves $totgauss $tree_config $num_iters $max_iter_inc $realign_iters $beam $retry_beam
# $power $seed.

# in_list N "LIST": whether N is one of the space-separated numbers of LIST (a pass schedule)
in_list() { [[ " $2 " == *" $1 "* ]]; }

# tree_and_first_model [ACC_OPTS...] [-- BUILD_OPTS...]: tree statistics from $alidir's alignments, the tree of
# $numleaves leaves and its one-Gaussian-per-leaf 1.mdl, $alidir's alignments converted to it, training graphs.
# ACC_OPTS / BUILD_OPTS go to esgd-train-tree acc / build (the features' front end or transforms). Stages -3, -2, -1.
tree_and_first_model() {
  local acc_opts=() build_opts=()
  while [ $# -gt 0 ] && [ "$1" != -- ]; do acc_opts+=("$1"); shift; done
  [ $# -eq 0 ] || { shift; build_opts=("$@"); }
  if [ "$stage" -le -3 ]; then
    echo "$0: accumulating tree statistics"
    $cmd JOB=1:"$nj" "$dir/log/acc_tree.JOB.log" \
      esgd-train-tree acc --nj "$nj" --job JOB "${acc_opts[@]}" "$data" "$lang" "$alidir" "$dir"
  fi
  if [ "$stage" -le -2 ]; then
    echo "$0: building the tree ($numleaves leaves) and the initial model"
    $cmd "$dir/log/build_tree.log" esgd-train-tree build --nj "$nj" --tree-config "$tree_config" \
      --num-leaves "$numleaves" --seed "$seed" "${build_opts[@]}" "$lang" "$alidir" "$dir"
  fi
  if [ "$stage" -le -1 ]; then
    echo "$0: converting the alignments and compiling training graphs"
    $cmd JOB=1:"$nj" "$dir/log/convert_ali.JOB.log" \
      esgd-train-tree convert-ali --nj "$nj" --job JOB "$data" "$alidir" "$dir"
    $cmd JOB=1:"$nj" "$dir/log/compile_graphs.JOB.log" \
      esgd-align compile-graphs --nj "$nj" --job JOB "$data" "$lang" "$dir/1.mdl" "$dir"
  fi
}

# realign X [ALIGN_OPTS...]: Viterbi realignment of the training data with X.mdl (for a BEFORE_PASS hook that
# re-estimates a transform on fresh alignments, as Kaldi does before such a pass's statistics)
realign() {
  local x=$1; shift
  $cmd JOB=1:"$nj" "$dir/log/align.$x.JOB.log" esgd-align align --nj "$nj" --job JOB --beam "$beam" \
    --retry-beam "$retry_beam" "$@" "$data" "$dir/$x.mdl" "$dir"
}

# em_passes BEFORE_PASS [ACC_OPTS...]: EM passes 1..$num_iters-1 from 1.mdl, realigning on $realign_iters and
# adding Gaussians up to $totgauss until pass $max_iter_inc; final.mdl links to the last model. BEFORE_PASS (a
# function name, or `true`) runs first in each pass with the pass number; $realigned says whether the pass
# realigns, and a hook that realigns itself sets acc_realign=false; a hook that changes files in place keeps them
# with pass_state first. ACC_OPTS go to esgd-gmm-train acc. Passes before --stage are skipped.
em_passes() {
  local before_pass=$1; shift
  local numgauss incgauss x realigned acc_realign
  numgauss=$(esgd-gmm-train info "$dir/1.mdl" | awk '$1 == "number-of-pdfs" {print $2}')
  incgauss=$(( (totgauss - numgauss) / max_iter_inc ))
  [ "$incgauss" -ge 0 ] || incgauss=0
  x=1
  while [ "$x" -lt "$num_iters" ]; do
    if [ "$stage" -le "$x" ]; then
      echo "$0: pass $x"
      realigned=false
      if in_list "$x" "$realign_iters"; then realigned=true; fi
      acc_realign=$realigned
      "$before_pass" "$x"
      $cmd JOB=1:"$nj" "$dir/log/acc.$x.JOB.log" esgd-gmm-train acc --nj "$nj" --job JOB --realign "$acc_realign" \
        --beam "$beam" --retry-beam "$retry_beam" "$@" "$data" "$dir" "$x"
      $cmd "$dir/log/update.$x.log" esgd-gmm-train est --nj "$nj" --first-iter 1 --mix-up "$numgauss" \
        --power "$power" --seed "$seed" --realigned "$realigned" "$dir" "$x"
      rm -f "$dir"/*.bak
    fi
    [ "$x" -le "$max_iter_inc" ] && numgauss=$((numgauss + incgauss))
    x=$((x + 1))
  done
  (cd "$dir" && ln -sf "$x.mdl" final.mdl)
}

# training_summary: the last pass's log-likelihood per frame and Gaussians, and the alignment failures of all passes
training_summary() {
  local failed
  failed=$(cat "$dir"/log/acc.*.log "$dir"/log/align.*.log 2>/dev/null | grep -c "not aligned:" || true)
  tail -n 1 "$dir/log/objf.tsv" | awk -v failed="$failed" '{print "last pass log-likelihood per frame " $3 ", " \
    $5 " Gaussians; " failed " alignment failures over all passes"}'
}
