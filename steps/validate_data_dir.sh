#!/usr/bin/env bash
# Check a Kaldi data dir: sorted files, matching keys, readable audio, non-empty transcripts.
set -euo pipefail
nj=1
cmd=${train_cmd:-esgd-queue}
audio=true
help_message="Usage: $0 [options] <data-dir>
Checks sorting, keys, audio and transcripts; fails naming the first bad file and line.
Options:
  --audio <true|false>   # read every recording (default: $audio)
  --nj <n>               # accepted for uniformity; the check is one job
  --cmd <cmd>            # job runner (default: \$train_cmd from cmd.sh)"
. "$(dirname "$0")/parse_options.sh"
if [ $# -ne 1 ]; then echo "$help_message" >&2; exit 1; fi
data=$1
[ -d "$data" ] || { echo "$0: no such data dir: $data" >&2; exit 1; }
opts=""; $audio || opts="--no-audio"
$cmd "exp/validate_data_dir/$(basename "$data")/log/validate.log" esgd-validate-data-dir $opts "$data"
