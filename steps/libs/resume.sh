# Continuing a stopped GMM trainer from a later step (Kaldi's --stage), sourced by train_mono.sh, train_deltas.sh,
# train_lda_mllt.sh and train_sat.sh after their option parsing; reads their $stage $nj $dir. Stages below 1 are the
# set-up steps; stage N >= 1 is EM pass N, which starts from N.mdl: pass N-1 writes it last, atomically, so a
# complete N.mdl means every earlier step has finished.

# start_or_resume FIRST [MODEL...]: from --stage FIRST (the first step) a run starts afresh: once the data dir
# ($data: keys, sorting, transcripts, feats.scp) and the MODELs it starts from are found sound, an earlier run's numbered
# models, matrices, statistics and pass snapshots go. A later --stage continues a run of the same --nj, from N.mdl
# for a pass.
start_or_resume() {
  local first=$1 model; shift
  if [ "$stage" -le "$first" ]; then
    esgd-validate-data-dir --no-wav "$data" > /dev/null || exit 1
    for model in "$@"; do esgd-gmm-train info "$model" > /dev/null || exit 1; done
    rm -f "$dir"/[0-9]*.mdl "$dir"/[0-9]*.mat "$dir"/*.acc "$dir"/*.bak
    echo "$nj" > "$dir/num_jobs"
    return 0
  fi
  local old_nj
  old_nj=$(cat "$dir/num_jobs" 2>/dev/null || echo none)
  if [ "$old_nj" != "$nj" ]; then
    echo "$0: --stage $stage continues a run of --nj $old_nj in $dir, not --nj $nj" >&2; exit 1
  fi
  if [ "$stage" -ge 1 ] && [ ! -f "$dir/$stage.mdl" ]; then
    echo "$0: --stage $stage: no $dir/$stage.mdl to continue from" >&2; exit 1
  fi
  echo "$0: continuing the run in $dir from stage $stage"
}

# pass_state X FILE...: before pass X changes FILEs in place (an MLLT or fMLLR update), keep them as they were at
# the start of the pass (FILE.passX.bak), or, continuing a stopped run that had begun the pass, put them back; so a
# pass repeated after a stop gives what it gives in one go. The snapshots go once the pass's model is written.
pass_state() {
  local x=$1 f; shift
  for f in "$@"; do
    if [ -f "$f.pass$x.bak" ]; then
      cp "$f.pass$x.bak" "$f.tmp" && mv "$f.tmp" "$f"
    else
      cp "$f" "$f.pass$x.bak.tmp" && mv "$f.pass$x.bak.tmp" "$f.pass$x.bak"
    fi
  done
}
