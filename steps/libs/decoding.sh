# Decoding jobs write aside, sourced by steps/decode.sh and steps/decode_nnet.sh after their option parsing: the
# jobs write lat.JOB.gz and timing.JOB into <decode-dir>/.new, and finish_decoding moves them in once all
# succeeded, so a decoding that fails (a corrupt model, a dimension mismatch) leaves the earlier lattices, num_jobs
# and best_wer as they were.

# staging_dir DIR: an empty <decode-dir>/.new for the jobs' outputs
staging_dir() {
  rm -rf "$1/.new" && mkdir -p "$1/.new" && echo "$1/.new"
}

# finish_decoding DIR NJ WHAT: the new lattices replace the old ones (and their scores); prints and keeps in
# DIR/log/rtf the real-time factor, split into WHAT (the scores: likelihoods or network) and the search
finish_decoding() {
  local dir=$1 nj=$2 what=$3
  rm -f "$dir"/lat.*.gz "$dir"/timing.* "$dir/best_wer"
  mv "$dir"/.new/* "$dir"/ && rmdir "$dir/.new"
  echo "$nj" > "$dir/num_jobs"
  cat "$dir"/timing.* | awk -v what="$what" '{f += $1; l += $2; s += $3} END {
    printf "real-time factor %.4f (%s %.4f, search %.4f) over %.1f s of audio, %d jobs\n",
           (l + s) / (f * 0.01), what, l / (f * 0.01), s / (f * 0.01), f * 0.01, NR }' | tee "$dir/log/rtf"
}

# check_decoded DIR MODEL: (--stage 1) DIR holds the lattices of a complete decoding with MODEL: num_jobs and every
# lat.JOB.gz, newer than MODEL; else stop naming what is missing
check_decoded() {
  local dir=$1 model=$2 nj job
  nj=$(cat "$dir/num_jobs" 2>/dev/null) || { echo "$0: --stage 1: no decoding in $dir (no num_jobs)" >&2; exit 1; }
  for job in $(seq "$nj"); do
    [ "$dir/lat.$job.gz" -nt "$model" ] \
      || { echo "$0: --stage 1: $dir/lat.$job.gz missing or older than $model" >&2; exit 1; }
  done
}
