# shellcheck shell=bash
# Helpers shared by the launch/*.sh scripts (sourced, not run).
#
# Options: a script declares each one with `opt NAME VAR DEFAULT HELP` (takes a
# value: --NAME=VALUE or --NAME VALUE) or `flag NAME VAR HELP` (on/off:
# --NAME, --no-NAME); every option can also come from the environment variable
# PPL_<VAR> (the command line wins). Then `parse_args "$@"` fills the variables,
# POSITIONAL (the other words) and EXTRA_ARGS (everything after `--`).
#
# Commands go through `run CMD ARG...` (or `run_sh 'shell line'` for pipes and
# redirections): with --dry-run (or PPL_DRY_RUN=1) they are printed, one per
# line as `+ <command>` quoted so that it can be pasted into bash, and not run;
# otherwise the same line goes to stderr and the command runs.
# Written for bash >= 3.2 (macOS workstations): no associative arrays.

PROG=${PROG:-$(basename "$0")}
DRY_RUN=${PPL_DRY_RUN:-0}
POSITIONAL=()
EXTRA_ARGS=()
_OPT_NAMES=()
_OPT_VARS=()
_OPT_KINDS=()
_OPT_DEFAULTS=()
_OPT_HELPS=()

die_usage() {  # Bad or missing settings: exit status 2.
  echo "$PROG: $*" >&2
  echo "Run '$PROG --help' for usage." >&2
  exit 2
}

die() {
  echo "$PROG: error: $*" >&2
  exit 1
}

warn() {
  echo "$PROG: warning: $*" >&2
}

note() {  # Progress messages: stderr, so that dry-run stdout holds only commands.
  echo "$PROG: $*" >&2
}

_env_value() {  # _env_value VAR DEFAULT -> $PPL_VAR if set, else DEFAULT
  local env="PPL_$1"
  if [[ -n ${!env+x} ]]; then
    printf '%s' "${!env}"
  else
    printf '%s' "$2"
  fi
}

opt() {  # opt NAME VAR DEFAULT HELP
  _OPT_NAMES+=("$1")
  _OPT_VARS+=("$2")
  _OPT_KINDS+=(value)
  _OPT_DEFAULTS+=("$3")
  _OPT_HELPS+=("$4")
  printf -v "$2" '%s' "$(_env_value "$2" "$3")"
}

flag() {  # flag NAME VAR HELP   (value 1 or 0)
  _OPT_NAMES+=("$1")
  _OPT_VARS+=("$2")
  _OPT_KINDS+=(bool)
  _OPT_DEFAULTS+=(0)
  _OPT_HELPS+=("$3")
  local value
  value=$(_env_value "$2" 0)
  case $value in
    1|true|yes|on) value=1 ;;
    *) value=0 ;;
  esac
  printf -v "$2" '%s' "$value"
}

_opt_index() {  # _opt_index NAME -> index in the option tables, or status 1
  local i
  for i in "${!_OPT_NAMES[@]}"; do
    if [[ ${_OPT_NAMES[i]} == "$1" ]]; then
      echo "$i"
      return 0
    fi
  done
  return 1
}

_flag_of_var() {  # _flag_of_var VAR -> --name
  local i
  for i in "${!_OPT_VARS[@]}"; do
    if [[ ${_OPT_VARS[i]} == "$1" ]]; then
      echo "--${_OPT_NAMES[i]}"
      return 0
    fi
  done
  echo "$1"
}

print_options() {
  local i default
  echo "Options (each also read from the environment variable shown):"
  for i in "${!_OPT_NAMES[@]}"; do
    if [[ ${_OPT_KINDS[i]} == bool ]]; then
      printf '  --%s (PPL_%s=1)\n' "${_OPT_NAMES[i]}" "${_OPT_VARS[i]}"
      printf '      %s\n' "${_OPT_HELPS[i]}"
    else
      default=${_OPT_DEFAULTS[i]}
      printf '  --%s=VALUE (PPL_%s)\n' "${_OPT_NAMES[i]}" "${_OPT_VARS[i]}"
      if [[ -n $default ]]; then
        printf '      %s Default: %s\n' "${_OPT_HELPS[i]}" "$default"
      else
        printf '      %s\n' "${_OPT_HELPS[i]}"
      fi
    fi
  done
  echo "  --dry-run (PPL_DRY_RUN=1)"
  echo "      Print every command, one per line prefixed with '+ ', and run nothing."
  echo "  -h, --help"
  echo "      Show this help."
}

usage() {  # The script sets USAGE (text before the option list).
  printf '%s\n\n' "$USAGE"
  print_options
}

parse_args() {
  local name value has_value index
  while (($#)); do
    case $1 in
      -h|--help)
        usage
        exit 0
        ;;
      --dry-run)
        DRY_RUN=1
        ;;
      --)
        shift
        # shellcheck disable=SC2034  # used by the scripts that source this file
        EXTRA_ARGS=("$@")
        break
        ;;
      --*)
        name=${1#--}
        value=
        has_value=0
        if [[ $name == *=* ]]; then
          value=${name#*=}
          name=${name%%=*}
          has_value=1
        fi
        if index=$(_opt_index "$name"); then
          if [[ ${_OPT_KINDS[index]} == bool ]]; then
            ((has_value == 0)) || die_usage "option --$name takes no value"
            printf -v "${_OPT_VARS[index]}" '%s' 1
          else
            if ((has_value == 0)); then
              (($# >= 2)) || die_usage "option --$name needs a value"
              value=$2
              shift
            fi
            printf -v "${_OPT_VARS[index]}" '%s' "$value"
          fi
        elif [[ $name == no-* ]] && index=$(_opt_index "${name#no-}") \
            && [[ ${_OPT_KINDS[index]} == bool ]]; then
          printf -v "${_OPT_VARS[index]}" '%s' 0
        else
          die_usage "unknown option --$name"
        fi
        ;;
      -?*)
        die_usage "unknown option $1"
        ;;
      *)
        POSITIONAL+=("$1")
        ;;
    esac
    shift
  done
}

require() {  # require VAR [WHY]: exit 2 naming the setting when VAR is empty.
  local var=$1 why=${2:-}
  if [[ -z ${!var:-} ]]; then
    die_usage "missing required setting $(_flag_of_var "$var") (or environment variable PPL_$var)${why:+ $why}"
  fi
}

q() {  # Quote one word for bash, like Python's shlex.quote; --name=VALUE quotes VALUE.
  local word=$1 sq="'"
  if [[ $word =~ ^(--[A-Za-z0-9_.-]+=)(.+)$ ]]; then
    printf '%s' "${BASH_REMATCH[1]}"
    word=${BASH_REMATCH[2]}
  fi
  if [[ -z $word ]]; then
    printf "''"
  elif [[ $word =~ ^[A-Za-z0-9_@%+=:,./-]+$ ]]; then
    printf '%s' "$word"
  else
    printf "'%s'" "${word//$sq/$sq\\$sq$sq}"
  fi
}

quote_cmd() {  # quote_cmd WORD... -> one bash command line
  local word out=
  for word in "$@"; do
    out+="${out:+ }$(q "$word")"
  done
  printf '%s' "$out"
}

run() {  # run CMD ARG...: print it; run it unless --dry-run.
  if [[ $DRY_RUN == 1 ]]; then
    printf '+ %s\n' "$(quote_cmd "$@")"
    return 0
  fi
  printf '+ %s\n' "$(quote_cmd "$@")" >&2
  "$@"
}

run_sh() {  # run_sh 'LINE': a shell line (pipes, redirections), run by bash.
  if [[ $DRY_RUN == 1 ]]; then
    printf '+ %s\n' "$1"
    return 0
  fi
  printf '+ %s\n' "$1" >&2
  bash -o pipefail -c "$1"
}

rq() {  # Quote one word inside a remote command line: "..." where that is enough.
  local word=$1
  if [[ $word =~ ^(--[A-Za-z0-9_.-]+=)(.+)$ ]]; then
    printf '%s' "${BASH_REMATCH[1]}"
    word=${BASH_REMATCH[2]}
  fi
  if [[ $word =~ ^[A-Za-z0-9_@%+=:,./-]+$ ]]; then
    printf '%s' "$word"
  elif [[ $word != *[\$\`\"\\!]* ]]; then
    printf '"%s"' "$word"
  else
    q "$word"
  fi
}

rquote_cmd() {  # rquote_cmd WORD... -> a command line for a remote shell
  local word out=
  for word in "$@"; do
    out+="${out:+ }$(rq "$word")"
  done
  printf '%s' "$out"
}

home_path() {  # A path for a remote shell: relative paths are under $HOME there.
  if [[ $1 == /* ]]; then
    rq "$1"
  else
    # shellcheck disable=SC2016  # $HOME is expanded by the remote shell
    printf '"$HOME"/%s' "$(rq "$1")"
  fi
}

check_relative_dir() {  # A remote directory the scripts create, extract into or delete.
  local var=$1 value=${!1}
  if [[ -z $value || $value == /* || $value == *..* || $value == . || $value == "~"* ]]; then
    die_usage "$(_flag_of_var "$var")=$value: give a directory relative to the remote home, without '..'"
  fi
}

split_into() {  # split_into ARRAY 'a,b c': ARRAY=(a b c)
  IFS=$', \t\n' read -r -a "$1" <<< "$2"
}
