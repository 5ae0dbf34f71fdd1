#!/usr/bin/env bash
# Train on several GPU machines: one ppl_jax.main process per host, started over
# ssh with JAX_COORDINATOR_ADDRESS / JAX_NUM_PROCESSES / JAX_PROCESS_ID, which
# ppl_jax.sharding.maybe_initialize_distributed() passes to
# jax.distributed.initialize. See launch/README.md.
# shellcheck disable=SC2153  # option variables are set by opt/flag (common.sh)
set -euo pipefail

PROG=gpu_hosts.sh
# shellcheck source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

USAGE="Usage: launch/gpu_hosts.sh [OPTIONS] [COMMAND] [-- TRAIN_ARGS...]

Commands:
  train   (default) On every host of --hosts, in order, start detached (nohup)
          JAX_COORDINATOR_ADDRESS=<coordinator>:<port> JAX_NUM_PROCESSES=<hosts>
          JAX_PROCESS_ID=<index> <python> -m ppl_jax.main --config=... --workdir=...
          in --remote-dir, output in --log-file on that host. Each process uses
          all GPUs of its host.
  logs    Follow the log of host --host-index (tail -F; --no-follow: last lines).
  status  Whether training runs on each host, and its last log lines.
  stop    Stop the training process on every host.

Every host needs: ssh access without a password prompt (keys, ~/.ssh/config),
the code in --remote-dir with ppl_jax and jax[cuda12] installed for --python
(e.g. git clone, then pip install -e . 'jax[cuda12]'), the data at the same
path, and the same --workdir: gs://BUCKET/PATH (ppl_jax.main writes there itself;
install gcsfs with pip install -e '.[gcs]'), a path on a shared file system, or a bucket
mounted at the same path on every host (gcsfuse BUCKET /mnt/BUCKET). Process 0 runs on
the first host; the others connect to it on --port.

Arguments after '--' are passed to ppl_jax.main (config overrides)."

opt hosts HOSTS "" "Hosts, comma or space separated, [user@]host as ssh takes them; the first runs process 0 (the coordinator). Required."
opt coordinator COORDINATOR "" "Address of the first host as the others reach it. Default: the first host without its user@."
opt port PORT 1234 "Coordinator port on the first host (must be reachable from the others)."
opt config CONFIG "" "Config file relative to --remote-dir, with its argument, e.g. configs/h36m.py:size=128. Required by train."
opt workdir WORKDIR "" "Checkpoints, metrics and images, the same for every host: gs://BUCKET/PATH (needs gcsfs on the hosts), a shared file system, or a bucket mounted at the same path on every host with gcsfuse. Required by train."
opt remote-dir REMOTE_DIR ppl_jax "Repository directory on the hosts (relative paths are under the home directory)."
opt python PYTHON python3 "Python on the hosts: a command name, or a path (relative ones under the home directory), e.g. ppl_venv/bin/python."
opt log-file LOG_FILE ppl_train.log "Training log on each host (relative paths are under the home directory)."
opt ssh SSH ssh "ssh program."
opt ssh-options SSH_OPTIONS "-o BatchMode=yes" "Options for ssh, split on spaces."
opt train-args TRAIN_ARGS "" "Extra arguments for ppl_jax.main, split on spaces (added before those after --)."
opt host-index HOST_INDEX 0 "Host whose log 'logs' shows (0 = first)."
opt lines TAIL_LINES 100 "Lines of log shown first by 'logs'."
flag no-follow NO_FOLLOW "logs: print the last --lines lines and return."

parse_args "$@"
((${#POSITIONAL[@]} <= 1)) || die_usage "one command at a time (got: ${POSITIONAL[*]})"
COMMAND=${POSITIONAL[0]:-train}
case $COMMAND in
  train|logs|status|stop) ;;
  *) die_usage "unknown command '$COMMAND' (train, logs, status or stop)" ;;
esac

require HOSTS
HOST_LIST=()
split_into HOST_LIST "$HOSTS"
((${#HOST_LIST[@]})) || die_usage "--hosts=$HOSTS names no host"
SSH_OPTS=()
if [[ -n $SSH_OPTIONS ]]; then
  split_into SSH_OPTS "$SSH_OPTIONS"
fi
if [[ $COMMAND == train ]]; then
  require CONFIG "(needed by train)"
  require WORKDIR "(needed by train)"
  if [[ $WORKDIR == *://* && $WORKDIR != gs://* ]]; then
    die_usage "--workdir=$WORKDIR: ppl_jax.main takes gs://BUCKET/PATH URLs (with gcsfs installed), local paths and shared file systems; mount other stores at the same path on every host and pass that path"
  fi
fi
[[ $PORT =~ ^[0-9]+$ ]] || die_usage "--port=$PORT is not a port number"
COORDINATOR=${COORDINATOR:-${HOST_LIST[0]#*@}}
PIDFILE=$(home_path "${LOG_FILE%.log}.pid")
LOG=$(home_path "$LOG_FILE")

remote_python() {  # A command name stays as it is; paths are under $HOME unless absolute.
  if [[ $PYTHON == */* ]]; then
    home_path "$PYTHON"
  else
    rq "$PYTHON"
  fi
}

on_host() {  # on_host HOST REMOTE_COMMAND
  run "$SSH" ${SSH_OPTS[@]+"${SSH_OPTS[@]}"} "$1" "$2"
}

cmd_train() {
  local extra=() args i line
  if [[ -n $TRAIN_ARGS ]]; then
    split_into extra "$TRAIN_ARGS"
  fi
  extra+=(${EXTRA_ARGS[@]+"${EXTRA_ARGS[@]}"})
  args=$(rquote_cmd -m ppl_jax.main --config="$CONFIG" --workdir="$WORKDIR" ${extra[@]+"${extra[@]}"})
  for i in "${!HOST_LIST[@]}"; do
    line="cd $(home_path "$REMOTE_DIR") || exit 1; "
    line+="if [ -f $PIDFILE ] && kill -0 \"\$(cat $PIDFILE)\" 2>/dev/null; then echo \"\$(hostname): ppl_jax.main is already running\" >&2; exit 1; fi; "
    line+="JAX_COORDINATOR_ADDRESS=$(rq "$COORDINATOR:$PORT") JAX_NUM_PROCESSES=${#HOST_LIST[@]} JAX_PROCESS_ID=$i "
    line+="nohup $(remote_python) $args > $LOG 2>&1 < /dev/null & "
    line+="echo \$! > $PIDFILE; echo \"\$(hostname): started JAX process $i of ${#HOST_LIST[@]}\""
    on_host "${HOST_LIST[i]}" "$line"
  done
}

cmd_logs() {
  if ! [[ $HOST_INDEX =~ ^[0-9]+$ ]] || ((HOST_INDEX >= ${#HOST_LIST[@]})); then
    die_usage "--host-index=$HOST_INDEX: give 0 to $((${#HOST_LIST[@]} - 1))"
  fi
  if ((NO_FOLLOW)); then
    on_host "${HOST_LIST[HOST_INDEX]}" "tail -n $(rq "$TAIL_LINES") $LOG"
  else
    on_host "${HOST_LIST[HOST_INDEX]}" "tail -n $(rq "$TAIL_LINES") -F $LOG"
  fi
}

cmd_status() {
  local host
  for host in "${HOST_LIST[@]}"; do
    on_host "$host" "if [ -f $PIDFILE ] && kill -0 \"\$(cat $PIDFILE)\" 2>/dev/null; then echo \"\$(hostname): training (pid \$(cat $PIDFILE))\"; else echo \"\$(hostname): not training\"; fi; tail -n 2 $LOG 2>/dev/null || true"
  done
}

cmd_stop() {
  local host
  for host in "${HOST_LIST[@]}"; do
    on_host "$host" "if [ -f $PIDFILE ]; then kill \"\$(cat $PIDFILE)\" 2>/dev/null || true; rm -f $PIDFILE; fi"
  done
}

"cmd_$COMMAND"
