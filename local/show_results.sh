#!/usr/bin/env bash
# Print the results table: corpus, LM perplexity and every system's best WER (exp/*/decode_*/best_wer).
set -euo pipefail
help_message="Usage: $0 [<data-root> [<exp-dir>]]   (defaults: data exp)"
. "$(dirname "$0")/../steps/parse_options.sh"
esgd-show-results "${1:-data}" "${2:-exp}"
