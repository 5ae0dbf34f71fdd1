#!/usr/bin/env bash
# Train on one machine with all (or some) of its GPUs: one process, JAX uses
# every visible GPU (the batch is split over them). See launch/README.md.
# shellcheck disable=SC2153  # option variables are set by opt/flag (common.sh)
set -euo pipefail

PROG=gpu_local.sh
# shellcheck source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

USAGE="Usage: launch/gpu_local.sh [OPTIONS] [-- TRAIN_ARGS...]

Runs 'python -m ppl_jax.main --config=... --workdir=...' in the current
directory (paths are relative to it, as with ppl_jax.main itself; run it from
the repository root) on all GPUs of this machine, or those in --gpus. No JAX_*
variables are needed: a single process drives all local GPUs.

JAX with CUDA: pip install -e . 'jax[cuda12]' (or --install to do it first;
the wheels bring their own CUDA 12 libraries, an NVIDIA driver is enough).

Arguments after '--' are passed to ppl_jax.main (config overrides), e.g.
  -- --config.batch_size=256 --config.data.root=/data/h36m"

opt config CONFIG "" "Config file, with its argument, e.g. configs/h36m.py:size=128. Required."
opt workdir WORKDIR "" "Checkpoints, metrics and images (a local path, or a gs:// bucket mounted with gcsfuse). Required."
opt gpus GPUS "" "GPUs to use, e.g. 0,1 (sets CUDA_VISIBLE_DEVICES). Default: all."
opt python PYTHON python3 "Python interpreter (of the environment ppl_jax is installed in)."
opt jax-requirement JAX_REQUIREMENT "jax[cuda12]" "pip requirement installed by --install."
flag install INSTALL "First run: PYTHON -m pip install -e <repo> JAX_REQUIREMENT."
flag background BACKGROUND "Detach with nohup: output to --log-file, process id to <log-file without .log>.pid."
opt log-file LOG_FILE ppl_train.log "Log file for --background."
opt train-args TRAIN_ARGS "" "Extra arguments for ppl_jax.main, split on spaces (added before those after --)."

parse_args "$@"
((${#POSITIONAL[@]} == 0)) || die_usage "unexpected argument '${POSITIONAL[0]}' (config overrides go after --)"
require CONFIG
require WORKDIR

TRAIN_EXTRA=()
if [[ -n $TRAIN_ARGS ]]; then
  split_into TRAIN_EXTRA "$TRAIN_ARGS"
fi
TRAIN_EXTRA+=(${EXTRA_ARGS[@]+"${EXTRA_ARGS[@]}"})

if ((INSTALL)); then
  run "$PYTHON" -m pip install -e "$REPO_ROOT" "$JAX_REQUIREMENT"
fi

cmd=("$PYTHON" -m ppl_jax.main --config="$CONFIG" --workdir="$WORKDIR" ${TRAIN_EXTRA[@]+"${TRAIN_EXTRA[@]}"})
if [[ -n $GPUS ]]; then
  cmd=(env CUDA_VISIBLE_DEVICES="$GPUS" "${cmd[@]}")
fi

if ((BACKGROUND)); then
  pidfile="${LOG_FILE%.log}.pid"
  run_sh "nohup $(quote_cmd "${cmd[@]}") > $(q "$LOG_FILE") 2>&1 < /dev/null & echo \$! > $(q "$pidfile")"
  [[ $DRY_RUN == 1 ]] || note "started; follow with: tail -F $(q "$LOG_FILE")   stop with: kill \$(cat $(q "$pidfile"))"
else
  run "${cmd[@]}"
fi
