# Kaldi-style option parsing; source it after giving every option a default.
# `--some-name value` or `--some-name=value` sets $some_name; an option with no variable is an error.
# Options whose default is true/false may be given bare (`--force` means `--force true`).
# `--config FILE` sources FILE (shell assignments); `--help` prints $help_message and exits. An option whose value
# is a number must be given a number; a script with an `nj` option gets it checked: a positive integer.
__po_number='^-?([0-9]+[.]?[0-9]*|[.][0-9]+)([eE][-+]?[0-9]+)?$'
while [ $# -gt 0 ]; do
  case "$1" in
    --help|-h)
      printf '%s\n' "${help_message:-$0: no help available}"; exit 0 ;;
    --*=*)
      __po_name=${1%%=*}; __po_value=${1#*=}; shift ;;
    --*)
      __po_name=$1; shift
      __po_var=${__po_name#--}; __po_var=${__po_var//-/_}
      if [ "${!__po_var-}" = true ] || [ "${!__po_var-}" = false ]; then
        if [ $# -gt 0 ] && { [ "$1" = true ] || [ "$1" = false ]; }; then __po_value=$1; shift; else __po_value=true; fi
      else
        if [ $# -eq 0 ]; then echo "$0: option $__po_name needs a value" >&2; exit 1; fi
        __po_value=$1; shift
      fi ;;
    *) break ;;
  esac
  __po_var=${__po_name#--}; __po_var=${__po_var//-/_}
  if [ "$__po_var" = config ]; then
    [ -f "$__po_value" ] || { echo "$0: --config: no such file: $__po_value" >&2; exit 1; }
    . "$__po_value"; continue
  fi
  if [[ ! "$__po_var" =~ ^[a-z][a-z0-9_]*$ ]] || [ -z "${!__po_var+set}" ]; then
    echo "$0: unknown option $__po_name (see $0 --help)" >&2; exit 1
  fi
  if { [ "${!__po_var}" = true ] || [ "${!__po_var}" = false ]; } && [ "$__po_value" != true ] && [ "$__po_value" != false ]; then
    echo "$0: option $__po_name expects true or false, got '$__po_value'" >&2; exit 1
  fi
  if [[ "${!__po_var}" =~ $__po_number ]] && [[ ! "$__po_value" =~ $__po_number ]]; then
    echo "$0: option $__po_name expects a number, got '$__po_value'" >&2; exit 1
  fi
  printf -v "$__po_var" '%s' "$__po_value"
done
unset __po_name __po_value __po_var __po_number
if [ -n "${nj+set}" ] && [[ ! "$nj" =~ ^[1-9][0-9]*$ ]]; then
  echo "$0: --nj must be a positive integer, got '$nj'" >&2; exit 1
fi
true
