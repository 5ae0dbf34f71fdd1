#!/usr/bin/env bash
# Cloud TPU VM / pod slice: create, deploy the code, install, train, logs, delete.
# Run on your workstation (with gcloud), not on the TPU. See launch/README.md.
# shellcheck disable=SC2153  # option variables are set by opt/flag (common.sh)
set -euo pipefail

PROG=tpu.sh
# shellcheck source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

USAGE="Usage: launch/tpu.sh [OPTIONS] COMMAND... [-- TRAIN_ARGS...]

Commands (several run in the order given, e.g. 'deploy install train'):
  create      Create the TPU VM / pod slice (gcloud compute tpus tpu-vm create),
              or with --queued a queued resource (queued-resources create),
              waiting until it is ACTIVE.
  deploy      Ship the code to every worker: a tarball of the repository
              (--source=archive: git archive of --ref; --source=worktree: the
              working tree, uncommitted changes included) copied with
              'tpu-vm scp --worker=all', or 'git clone' of --repo-url at --ref
              on every worker (--source=git).
  install     On every worker: a virtual environment with Python
              --python-version (made with uv, as the TPU images ship Python
              3.10), then 'pip install -e <code> jax[tpu]'. With a gs://
              --workdir (or --install-gcsfuse), first Cloud Storage FUSE
              (gcsfuse, from its apt repository) where it is missing.
  train       Start 'python -m ppl_jax.main --config=... --workdir=...' on every
              worker at once (ssh --worker=all), detached with nohup, output in
              --log-file on each worker. No JAX_* variables are needed: on a
              pod slice JAX finds the other workers itself. A gs://BUCKET/PATH
              workdir is mounted first on every worker (gcsfuse BUCKET at
              ~/<gcs-mount-dir>/BUCKET, unless mounted already) and ppl_jax.main
              gets --workdir=~/<gcs-mount-dir>/BUCKET/PATH.
  logs        Follow the log of --worker (tail -F; --no-follow: last lines).
  fetch-logs  Copy the log of each of --workers into --dest/<worker>.log.
              (Metrics, checkpoints and images are in the workdir: with a gs://
              workdir they are written into the bucket through the mount, e.g.
              gcloud storage ls gs://BUCKET/PATH.)
  status      The TPU's state and whether training runs on each worker.
  stop        Stop the training process on every worker.
  exec        Run --command on every worker (e.g. to copy data from a bucket).
  delete      Delete the TPU (or the queued resource and its TPU).
  all         create, deploy, install, train.

Arguments after '--' are passed to ppl_jax.main (config overrides), e.g.
  -- --config.batch_size=256 --config.data.root=../data/h36m
(training runs in --remote-dir: relative paths are relative to it)."

opt project PROJECT "" "Google Cloud project id. Required."
opt zone ZONE "" "Zone of the TPU, e.g. us-central2-b (one that offers the accelerator type). Required."
opt tpu-name TPU_NAME "" "Name of the TPU VM / pod slice. Required."
opt accelerator-type ACCELERATOR_TYPE "" \
  "e.g. v4-8, v4-32, v5litepod-16, v5p-32, v6e-8. Required by create."
opt runtime-version RUNTIME_VERSION "" \
  "TPU software version. Default: from the accelerator type, the versions Cloud TPU recommends for JAX: v6e-* v2-alpha-tpuv6e, v5p-* v2-alpha-tpuv5, v5litepod-*/v5e-* v2-alpha-tpuv5-lite, v2/v3/v4-* tpu-ubuntu2204-base."
flag queued QUEUED "Create/delete through a queued resource (gcloud compute tpus queued-resources)."
opt queued-resource-id QUEUED_RESOURCE_ID "" "Queued resource id. Default: <tpu-name>-qr."
flag spot SPOT "Spot TPU (create)."
flag reserved RESERVED "Use reserved capacity (create)."
flag no-wait NO_WAIT "With --queued: return after the request instead of waiting for ACTIVE."
opt source SOURCE archive "Code to deploy: archive (git archive of --ref), worktree (tracked and untracked, not ignored, files as they are now) or git (clone --repo-url on the workers)."
opt ref REF HEAD "Commit, branch or tag for --source=archive or git."
opt repo-url REPO_URL "" "Repository URL to clone on the workers. Required by --source=git."
opt tarball TARBALL "" "Local path of the tarball for deploy. Default: \$TMPDIR/ppl_jax-<tpu-name>.tar.gz."
opt remote-dir REMOTE_DIR ppl_jax "Code directory on the workers, relative to the home directory."
opt venv VENV ppl_venv "Virtual environment on the workers, relative to the home directory."
opt python-version PYTHON_VERSION 3.11 "Python version of that environment (ppl_jax needs >= 3.11)."
opt jax-requirement JAX_REQUIREMENT "jax[tpu]" "pip requirement installed with the package."
opt find-links FIND_LINKS https://storage.googleapis.com/jax-releases/libtpu_releases.html \
  "Extra package page for libtpu (as in the Cloud TPU instructions); empty for none."
opt config CONFIG "" "Config file relative to the repository root, with its argument, e.g. configs/h36m.py:size=128. Required by train."
opt workdir WORKDIR "" "Checkpoints, metrics and images, the same for every worker: gs://BUCKET/PATH, e.g. gs://my-bucket/ppl/h36m (train mounts the bucket on every worker, see --gcs-mount-dir), or a path on a shared file system. Required by train."
opt gcs-mount-dir GCS_MOUNT_DIR gcs \
  "With --workdir=gs://BUCKET/PATH: train mounts BUCKET with gcsfuse at <this directory>/BUCKET on every worker (relative to the home directory) and passes --workdir=<that>/PATH to ppl_jax.main."
opt gcsfuse-flags GCSFUSE_FLAGS "--implicit-dirs --rename-dir-limit=200000" \
  "gcsfuse options for that mount, split on spaces. --rename-dir-limit lets checkpoints (written to a temporary directory, then renamed) work on buckets without hierarchical namespace."
flag gcs-native GCS_NATIVE "With --workdir=gs://BUCKET/PATH: no gcsfuse mount; ppl_jax.main gets the gs:// URL and writes there itself (etils.epath with gcsfs, orbax for checkpoints), and install adds the package's [gcs] extra instead of gcsfuse."
flag install-gcsfuse INSTALL_GCSFUSE "install: also install gcsfuse on every worker where it is missing (done anyway when --workdir is gs://...)."
opt log-file LOG_FILE ppl_train.log "Training log on each worker, relative to the home directory."
opt train-args TRAIN_ARGS "" "Extra arguments for ppl_jax.main, split on spaces (added before those after --)."
opt worker WORKER 0 "Worker whose log 'logs' shows (a number, or all)."
opt lines TAIL_LINES 100 "Lines of log shown first by 'logs'."
flag no-follow NO_FOLLOW "logs: print the last --lines lines and return."
opt workers WORKERS all "Workers whose logs fetch-logs copies: all, or numbers and ranges, e.g. 0,2-3."
opt dest DEST tpu-logs "Local directory for fetch-logs."
opt command COMMAND "" "Shell command for 'exec', run in the home directory of every worker."

parse_args "$@"
((${#POSITIONAL[@]})) || die_usage "no command given (create, deploy, install, train, logs, fetch-logs, status, stop, exec, delete or all)"

COMMANDS=()
for command in "${POSITIONAL[@]}"; do
  case $command in
    all) COMMANDS+=(create deploy install train) ;;
    create|deploy|install|train|logs|fetch-logs|status|stop|exec|delete) COMMANDS+=("$command") ;;
    *) die_usage "unknown command '$command'" ;;
  esac
done

TRAIN_EXTRA=()
if [[ -n $TRAIN_ARGS ]]; then
  split_into TRAIN_EXTRA "$TRAIN_ARGS"
fi
TRAIN_EXTRA+=(${EXTRA_ARGS[@]+"${EXTRA_ARGS[@]}"})
QUEUED_RESOURCE_ID=${QUEUED_RESOURCE_ID:-${TPU_NAME:+$TPU_NAME-qr}}
TARBALL=${TARBALL:-${TMPDIR:-/tmp}/ppl_jax-${TPU_NAME}.tar.gz}
PIDFILE="${LOG_FILE%.log}.pid"

default_runtime_version() {
  case $1 in
    v6e-*) echo v2-alpha-tpuv6e ;;
    v5p-*) echo v2-alpha-tpuv5 ;;
    v5litepod-*|v5e-*) echo v2-alpha-tpuv5-lite ;;
    v2-*|v3-*|v4-*) echo tpu-ubuntu2204-base ;;
    *) return 1 ;;
  esac
}

GCS_BUCKET=
GCS_PATH=
split_gcs_workdir() {  # gs://BUCKET/PATH -> GCS_BUCKET, GCS_PATH (no leading or trailing /)
  local rest=${WORKDIR#gs://}
  GCS_BUCKET=${rest%%/*}
  GCS_PATH=${rest#"$GCS_BUCKET"}
  GCS_PATH=${GCS_PATH#/}
  while [[ $GCS_PATH == */ ]]; do
    GCS_PATH=${GCS_PATH%/}
  done
  [[ $GCS_BUCKET =~ ^[a-z0-9]([a-z0-9._-]*[a-z0-9])?$ ]] \
    || die_usage "--workdir=$WORKDIR: '$GCS_BUCKET' is not a bucket name (give gs://BUCKET/PATH)"
  if [[ -n $GCS_PATH && /$GCS_PATH/ == *//* || /$GCS_PATH/ == */./* || /$GCS_PATH/ == */../* ]]; then
    die_usage "--workdir=$WORKDIR: give gs://BUCKET/PATH with no empty, '.' or '..' parts in PATH"
  fi
}

# Check every setting the requested commands need before running any of them.
require PROJECT
require ZONE
require TPU_NAME
for command in "${COMMANDS[@]}"; do
  case $command in
    create)
      require ACCELERATOR_TYPE "(needed by create)"
      if [[ -z $RUNTIME_VERSION ]]; then
        RUNTIME_VERSION=$(default_runtime_version "$ACCELERATOR_TYPE") \
          || die_usage "missing required setting --runtime-version (or environment variable PPL_RUNTIME_VERSION): no default for accelerator type $ACCELERATOR_TYPE"
      fi
      ;;
    deploy)
      case $SOURCE in
        archive|worktree) ;;
        git) require REPO_URL "(needed by --source=git)" ;;
        *) die_usage "--source=$SOURCE: use archive, worktree or git" ;;
      esac
      check_relative_dir REMOTE_DIR
      ;;
    install)
      check_relative_dir REMOTE_DIR
      check_relative_dir VENV
      ;;
    train)
      require CONFIG "(needed by train)"
      require WORKDIR "(needed by train)"
      check_relative_dir REMOTE_DIR
      if [[ $WORKDIR == gs://* ]]; then
        split_gcs_workdir
        check_relative_dir GCS_MOUNT_DIR
      elif [[ $WORKDIR == *://* ]]; then
        die_usage "--workdir=$WORKDIR: give gs://BUCKET/PATH (mounted on every worker with gcsfuse) or a path on a shared file system"
      fi
      ;;
    fetch-logs)
      [[ $WORKERS =~ ^(all|[0-9]+(-[0-9]+)?(,[0-9]+(-[0-9]+)?)*)$ ]] \
        || die_usage "--workers=$WORKERS: give all, or worker numbers and ranges, e.g. 0,2-3"
      ;;
    exec)
      require COMMAND "(needed by exec)"
      ;;
  esac
done

GCLOUD_WHERE=(--zone="$ZONE" --project="$PROJECT")

ssh_all() {  # ssh_all REMOTE_COMMAND: run it on every worker.
  run gcloud compute tpus tpu-vm ssh "$TPU_NAME" "${GCLOUD_WHERE[@]}" --worker=all --command="$1"
}

cmd_create() {
  local extra=()
  ((SPOT == 0)) || extra+=(--spot)
  ((RESERVED == 0)) || extra+=(--reserved)
  if ((QUEUED)); then
    run gcloud compute tpus queued-resources create "$QUEUED_RESOURCE_ID" "${GCLOUD_WHERE[@]}" \
      --node-id="$TPU_NAME" --accelerator-type="$ACCELERATOR_TYPE" \
      --runtime-version="$RUNTIME_VERSION" ${extra[@]+"${extra[@]}"}
    ((NO_WAIT)) || wait_active
  else
    run gcloud compute tpus tpu-vm create "$TPU_NAME" "${GCLOUD_WHERE[@]}" \
      --accelerator-type="$ACCELERATOR_TYPE" --version="$RUNTIME_VERSION" \
      ${extra[@]+"${extra[@]}"}
  fi
}

wait_active() {  # Poll the queued resource until ACTIVE (printed once in dry-run).
  local describe=(gcloud compute tpus queued-resources describe "$QUEUED_RESOURCE_ID"
                  "${GCLOUD_WHERE[@]}" --format='value(state.state)')
  local state
  run "${describe[@]}"
  [[ $DRY_RUN == 1 ]] && return 0
  while true; do
    state=$("${describe[@]}")
    case $state in
      ACTIVE) note "queued resource $QUEUED_RESOURCE_ID is ACTIVE"; return 0 ;;
      FAILED|SUSPENDED) die "queued resource $QUEUED_RESOURCE_ID is $state" ;;
    esac
    note "queued resource $QUEUED_RESOURCE_ID: $state; checking again in 30 s"
    sleep 30
  done
}

cmd_deploy() {
  local remote_tar
  remote_tar="$(basename "$REMOTE_DIR").tar.gz"
  case $SOURCE in
    git)
      ssh_all "rm -rf -- $(home_path "$REMOTE_DIR") && git clone --quiet $(rq "$REPO_URL") $(home_path "$REMOTE_DIR") && git -C $(home_path "$REMOTE_DIR") checkout --quiet $(rq "$REF")"
      return 0
      ;;
    archive)
      if [[ $DRY_RUN != 1 && -n $(git -C "$REPO_ROOT" status --porcelain) ]]; then
        warn "uncommitted changes are not deployed with --source=archive (use --source=worktree)"
      fi
      run git -C "$REPO_ROOT" archive --format=tar.gz --output="$TARBALL" "$REF"
      ;;
    worktree)
      run_sh "git -C $(q "$REPO_ROOT") ls-files -z --cached --others --exclude-standard | tar -czf $(q "$TARBALL") -C $(q "$REPO_ROOT") --null --ignore-failed-read -T -"
      ;;
  esac
  run gcloud compute tpus tpu-vm scp "$TARBALL" "$TPU_NAME:$remote_tar" "${GCLOUD_WHERE[@]}" --worker=all
  ssh_all "mkdir -p $(home_path "$REMOTE_DIR") && tar -xzf $(home_path "$remote_tar") -C $(home_path "$REMOTE_DIR") && rm -f $(home_path "$remote_tar")"
}

# Cloud Storage FUSE from its apt repository (TPU VM images are Ubuntu), where it is missing.
# shellcheck disable=SC2016  # expanded by the remote shell
GCSFUSE_INSTALL='if command -v gcsfuse > /dev/null 2>&1; then echo "$(hostname): gcsfuse is installed"; else set -e; . /etc/os-release; sudo curl -fsSL -o /usr/share/keyrings/cloud.google.asc https://packages.cloud.google.com/apt/doc/apt-key.gpg; echo "deb [signed-by=/usr/share/keyrings/cloud.google.asc] https://packages.cloud.google.com/apt gcsfuse-$VERSION_CODENAME main" | sudo tee /etc/apt/sources.list.d/gcsfuse.list > /dev/null; sudo apt-get -o DPkg::Lock::Timeout=600 update -q; sudo DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -q gcsfuse; gcsfuse --version; fi'

cmd_install() {
  local code python
  code=$(home_path "$REMOTE_DIR")
  python=$(home_path "$VENV/bin/python")
  if [[ $WORKDIR == gs://* ]] && ! ((GCS_NATIVE)) || ((INSTALL_GCSFUSE)); then
    ssh_all "$GCSFUSE_INSTALL"
  fi
  if ((GCS_NATIVE)); then
    code+="'[gcs]'"
  fi
  ssh_all "set -e; python3 -m pip install --user --quiet --upgrade uv; [ -x $python ] || python3 -m uv venv --python $(rq "$PYTHON_VERSION") $(home_path "$VENV"); python3 -m uv pip install --python $python${FIND_LINKS:+ --find-links $(rq "$FIND_LINKS")} -e $code $(rq "$JAX_REQUIREMENT"); $python -c \"import jax, ppl_jax; print(jax.__version__)\""
}

# The remote lines that mount gs://GCS_BUCKET at ~/GCS_MOUNT_DIR/GCS_BUCKET unless it is mounted.
gcs_mount_lines() {
  local mount flags=() gcsfuse=gcsfuse line
  mount=$(home_path "$GCS_MOUNT_DIR/$GCS_BUCKET")
  if [[ -n $GCSFUSE_FLAGS ]]; then
    split_into flags "$GCSFUSE_FLAGS"
  fi
  if ((${#flags[@]})); then
    gcsfuse+=" $(rquote_cmd "${flags[@]}")"
  fi
  line="mkdir -p $mount || exit 1; "
  line+="if ! mountpoint -q $mount; then "
  line+="if ! command -v gcsfuse > /dev/null 2>&1; then echo \"\$(hostname): gcsfuse (Cloud Storage FUSE) is needed to mount gs://$GCS_BUCKET but is not installed: run launch/tpu.sh install with this --workdir (or --install-gcsfuse), or install the gcsfuse package from its apt repository, see https://cloud.google.com/storage/docs/cloud-storage-fuse/install\" >&2; exit 1; fi; "
  line+="$gcsfuse $(rq "$GCS_BUCKET") $mount || exit 1; fi; "
  printf '%s' "$line"
}

cmd_train() {
  local python workdir_arg more_args="" line
  python=$(home_path "$VENV/bin/python")
  if [[ $WORKDIR == gs://* ]] && ((GCS_NATIVE)); then
    workdir_arg=$(rq --workdir="gs://$GCS_BUCKET${GCS_PATH:+/$GCS_PATH}")
  elif [[ $WORKDIR == gs://* ]]; then
    workdir_arg="--workdir=$(home_path "$GCS_MOUNT_DIR/$GCS_BUCKET${GCS_PATH:+/$GCS_PATH}")"
  else
    workdir_arg=$(rq --workdir="$WORKDIR")
    warn "--workdir=$WORKDIR is passed as it is: on a pod slice every worker needs the same workdir, so use gs://BUCKET/PATH (mounted on every worker automatically) or a shared file system"
  fi
  if ((${#TRAIN_EXTRA[@]})); then
    more_args=" $(rquote_cmd "${TRAIN_EXTRA[@]}")"
  fi
  line="cd $(home_path "$REMOTE_DIR") || exit 1; "
  line+="if [ -f $(home_path "$PIDFILE") ] && kill -0 \"\$(cat $(home_path "$PIDFILE"))\" 2>/dev/null; then echo \"\$(hostname): ppl_jax.main is already running\" >&2; exit 1; fi; "
  if [[ $WORKDIR == gs://* ]] && ! ((GCS_NATIVE)); then
    line+=$(gcs_mount_lines)
  fi
  line+="nohup $python $(rquote_cmd -m ppl_jax.main --config="$CONFIG") $workdir_arg$more_args > $(home_path "$LOG_FILE") 2>&1 < /dev/null & "
  line+="echo \$! > $(home_path "$PIDFILE"); echo \"\$(hostname): started ppl_jax.main\""
  ssh_all "$line"
}

cmd_logs() {
  local tail_cmd
  if ((NO_FOLLOW)); then
    tail_cmd="tail -n $(rq "$TAIL_LINES") $(home_path "$LOG_FILE")"
  else
    tail_cmd="tail -n $(rq "$TAIL_LINES") -F $(home_path "$LOG_FILE")"
  fi
  run gcloud compute tpus tpu-vm ssh "$TPU_NAME" "${GCLOUD_WHERE[@]}" --worker="$WORKER" --command="$tail_cmd"
}

cmd_fetch_logs() {  # gcloud writes each worker's output to DEST/<worker>.log.
  run mkdir -p "$DEST"
  run gcloud compute tpus tpu-vm ssh "$TPU_NAME" "${GCLOUD_WHERE[@]}" --worker="$WORKERS" \
    --command="cat $(home_path "$LOG_FILE")" --output-directory="$DEST"
}

cmd_status() {
  if ((QUEUED)); then
    run gcloud compute tpus queued-resources describe "$QUEUED_RESOURCE_ID" "${GCLOUD_WHERE[@]}" --format='value(state.state)'
  fi
  run gcloud compute tpus tpu-vm describe "$TPU_NAME" "${GCLOUD_WHERE[@]}" --format='value(state,acceleratorType,runtimeVersion)'
  ssh_all "if [ -f $(home_path "$PIDFILE") ] && kill -0 \"\$(cat $(home_path "$PIDFILE"))\" 2>/dev/null; then echo \"\$(hostname): training (pid \$(cat $(home_path "$PIDFILE")))\"; else echo \"\$(hostname): not training\"; fi; tail -n 2 $(home_path "$LOG_FILE") 2>/dev/null || true"
}

cmd_stop() {
  ssh_all "if [ -f $(home_path "$PIDFILE") ]; then kill \"\$(cat $(home_path "$PIDFILE"))\" 2>/dev/null || true; rm -f $(home_path "$PIDFILE"); fi"
}

cmd_exec() {
  ssh_all "$COMMAND"
}

cmd_delete() {
  if ((QUEUED)); then
    run gcloud compute tpus queued-resources delete "$QUEUED_RESOURCE_ID" "${GCLOUD_WHERE[@]}" --force --quiet
  else
    run gcloud compute tpus tpu-vm delete "$TPU_NAME" "${GCLOUD_WHERE[@]}" --quiet
  fi
}

for command in "${COMMANDS[@]}"; do
  "cmd_${command//-/_}"
done
