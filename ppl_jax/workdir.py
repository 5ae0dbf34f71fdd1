"""The workdir of a run; this module owns its layout and its files.

  WORKDIR/config.json      the training config, written once it fits the checkpoint it resumes
  WORKDIR/provenance.json  git commit and package versions of the training
  WORKDIR/lock             host and PID of the training that holds the workdir
  WORKDIR/checkpoints/     orbax checkpoints (`ppl_jax.checkpointing`)
  WORKDIR/unreadable_checkpoints/  checkpoints a resume could not read, moved aside
  WORKDIR/metrics.jsonl, tensorboard/, images/   (`ppl_jax.metric_writers`)
  WORKDIR/eval/            the evaluation report (`ppl_jax.evaluate`)

Files are reached through `etils.epath` (the path API orbax uses), so WORKDIR may be a
URL: gs://BUCKET/PATH with gcsfs installed (`pip install 'ppl_jax[gcs]'`).
"""

import contextlib
import json
import os
import shutil
import socket
import tempfile
import time
from typing import Any, Dict, Iterator, List, Optional, Tuple

from absl import logging
from etils import epath
import ml_collections
import orbax.checkpoint as ocp

from ppl_jax import checkpointing
from ppl_jax import config as config_lib
from ppl_jax import provenance

CONFIG = 'config.json'
PROVENANCE = 'provenance.json'
LOCK = 'lock'
CHECKPOINTS = 'checkpoints'
UNREADABLE = 'unreadable_checkpoints'
EVAL = 'eval'
# A lock file that does not parse is another run's being written, until it is this old.
_PARTIAL_LOCK_SECONDS = 5.0


class WorkdirLockedError(ValueError):
  """Another live training holds the workdir."""


def is_url(workdir: str) -> bool:
  """Whether `workdir` is a URL (gs://BUCKET/PATH ...) rather than a local path."""
  return '://' in os.fspath(workdir)


def path(workdir: str, *parts: str) -> epath.Path:
  return epath.Path(workdir if is_url(workdir) else os.path.abspath(workdir)).joinpath(*parts)


def checkpoint_dir(workdir: str) -> str:
  return os.fspath(path(workdir, CHECKPOINTS))


def eval_dir(workdir: str) -> str:
  """Where `evaluate` writes the report by default."""
  return os.fspath(path(workdir, EVAL))


# --- config and provenance ---------------------------------------------------

def write_config(workdir: str, config: ml_collections.ConfigDict) -> None:
  """DIR/config.json and DIR/provenance.json (call once the config fits the checkpoint)."""
  path(workdir, CONFIG).write_text(config.to_json_best_effort(indent=2))
  path(workdir, PROVENANCE).write_text(json.dumps(provenance.current(), indent=2))


def read_provenance(workdir: str) -> Optional[Dict[str, Any]]:
  """DIR/provenance.json, or None if training did not write one."""
  file = path(workdir, PROVENANCE)
  return json.loads(file.read_text()) if file.exists() else None


def load_config(workdir: str,
                config: Optional[ml_collections.ConfigDict] = None
                ) -> ml_collections.ConfigDict:
  """`config` if given, else DIR/config.json (written by training) on the defaults.

  JSON turns tuples into lists; fields whose default is a tuple get tuples back.
  """
  if config is not None:
    return config
  file = path(workdir, CONFIG)
  if not file.exists():
    raise FileNotFoundError(
        f'{file} not found: training writes it into its workdir. Pass the training '
        'config explicitly, e.g. --config=configs/synthetic.py.')
  try:
    values = json.loads(file.read_text())
  except (OSError, ValueError) as e:
    raise ValueError(f'{file} cannot be read as JSON ({e}); pass --config=... '
                     'instead.') from e
  result = config_lib.default_config()
  _merge(result, values)
  return result


def _as_tuples(value):
  if isinstance(value, list):
    return tuple(_as_tuples(v) for v in value)
  return value


def _merge(node: ml_collections.ConfigDict, values: Dict[str, Any]) -> None:
  for key, value in values.items():
    current = node.get(key)
    if isinstance(value, dict) and isinstance(current, ml_collections.ConfigDict):
      _merge(current, value)
      continue
    if isinstance(current, tuple) or current is None:
      value = _as_tuples(value)
    # JSON cannot say int from float for values like 1.0, nor keep tuples.
    with node.ignore_type():
      node[key] = value


# --- the lock ----------------------------------------------------------------

def _alive(pid: int) -> bool:
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:   # alive, another user's
    return True
  return True


@contextlib.contextmanager
def lock(workdir: str) -> Iterator[None]:
  """Holds DIR/lock while the body runs: a second training on DIR is refused.

  A lock left by a dead process of this host (a killed run) is taken over with a warning;
  one of another host is refused, since its process cannot be checked from here. Creates
  DIR if needed, and removes it again if the body wrote nothing into it.
  """
  file = path(workdir, LOCK)
  created = not file.parent.exists()
  file.parent.mkdir(parents=True, exist_ok=True)
  mine = {'host': socket.gethostname(), 'pid': os.getpid(),
          'started': time.strftime('%Y-%m-%d %H:%M:%S %Z')}
  text = json.dumps(mine)
  while True:
    if is_url(workdir):   # an object store has no exclusive create: check, then write
      if not file.exists():
        file.write_text(text)
        break
    else:
      try:
        # Exclusive create: of two trainings starting at once, exactly one gets the lock.
        with open(os.fspath(file), 'x') as f:
          f.write(text)
        break
      except FileExistsError:
        pass
    try:
      holder = json.loads(file.read_text())
      host, pid = holder['host'], int(holder['pid'])
    except FileNotFoundError:
      continue        # released meanwhile
    except (ValueError, KeyError, TypeError):
      holder = None   # being written by a starting run, or written in part by a killed one
      try:
        if time.time() - file.stat().mtime < _PARTIAL_LOCK_SECONDS:
          time.sleep(0.1)
          continue
      except FileNotFoundError:
        continue
    if holder is not None and (host != mine['host'] or _alive(pid)):
      raise WorkdirLockedError(
          f'{workdir} is in use by the training with PID {pid} on host {host} (started '
          f'{holder.get("started", "?")}): wait for it to end or stop it, or pass another '
          f'--workdir. If that process no longer exists, remove {file}.')
    logging.warning('Taking over the stale lock %s of a process that no longer runs (%s).',
                    file, holder)
    file.unlink(missing_ok=True)
  try:
    yield
  finally:
    try:
      if json.loads(file.read_text()) == mine:
        file.unlink()
    except (FileNotFoundError, ValueError):
      pass
    if created and not is_url(workdir) and not any(file.parent.iterdir()):
      file.parent.rmdir()   # a run that failed before writing anything leaves no workdir


# --- report folders --------------------------------------------------------------

@contextlib.contextmanager
def staged_folder(final: str) -> Iterator[str]:
  """Yields a new local folder to write into; on success it replaces `final` (a local
  path or a URL), so a failure leaves the previous `final` as it was.

  Local: a sibling folder, renamed into place. URL: a local temporary folder, uploaded
  beside `final` and then renamed into place (an object store has no atomic rename, so a
  reader may briefly see neither).
  """
  target, remote = path(final), is_url(final)
  if not remote:
    target.parent.mkdir(parents=True, exist_ok=True)
  staging = tempfile.mkdtemp(prefix='.staging-', dir=None if remote else target.parent)
  uploaded = None
  try:
    yield staging
    if remote:
      uploaded = target.parent / f'.staging-{os.getpid()}-{time.time_ns()}'
      for folder, _, files in os.walk(staging):
        relative = os.path.relpath(folder, staging)
        destination = uploaded if relative == '.' else uploaded / relative
        destination.mkdir(parents=True, exist_ok=True)
        for name in files:
          (destination / name).write_bytes(epath.Path(folder, name).read_bytes())
      new = uploaded
    else:
      new = epath.Path(staging)
    if target.exists():
      old = target.parent / f'{new.name}-old'
      target.rename(old)
      new.rename(target)
      old.rmtree()
    else:
      new.rename(target)
  finally:
    if os.path.exists(staging):
      shutil.rmtree(staging)
    if uploaded is not None and uploaded.exists():
      uploaded.rmtree()


# --- checkpoints ---------------------------------------------------------------

def _manager(workdir: str) -> ocp.CheckpointManager:
  # read_only: evaluating must never create, delete or rewrite checkpoints.
  options = ocp.CheckpointManagerOptions(read_only=True, create=False)
  return ocp.CheckpointManager(checkpoint_dir(workdir), options=options,
                               item_names=('state', 'data_iter'))


def checkpoint_steps(workdir: str) -> List[int]:
  """Sorted steps of the complete checkpoints in DIR/checkpoints (raises if none)."""
  directory = checkpoint_dir(workdir)
  steps = []
  if epath.Path(directory).is_dir():
    manager = _manager(workdir)
    steps = sorted(manager.all_steps())
    manager.close()
  if not steps:
    raise FileNotFoundError(
        f'No checkpoint in {directory}: train first (python -m ppl_jax.main '
        f'--config=... --workdir={workdir}) or pass the workdir of a trained run.')
  return steps


def restore_state(workdir: str, config: ml_collections.ConfigDict, abstract_state: Any,
                  step: Optional[int] = None,
                  steps: Optional[List[int]] = None) -> Tuple[int, Any]:
  """(step, train state) of DIR's checkpoint `step`, read-only.

  Without `step`, the newest checkpoint that reads (older ones are tried, with a warning,
  when the newest is damaged). `abstract_state` gives shapes, dtypes and shardings;
  `steps` the kept steps when the caller has read them (`checkpoint_steps`).
  """
  steps = checkpoint_steps(workdir) if steps is None else steps
  if step is not None and int(step) not in steps:
    raise ValueError(f'No checkpoint of step {step} in {checkpoint_dir(workdir)}; '
                     f'kept steps: {steps}.')
  manager = _manager(workdir)

  def restore_step(s):
    checkpointing.check_layout(os.path.join(checkpoint_dir(workdir), str(s), 'state'),
                               abstract_state, config)
    restored = manager.restore(s, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract_state)))
    return restored['state']

  try:
    step, state, _ = checkpointing.restore_newest_readable(
        steps if step is None else [int(step)], restore_step,
        directory=checkpoint_dir(workdir), config=config)
  finally:
    manager.close()
  return step, state


def move_aside(workdir: str, steps: List[int]) -> None:
  """Moves unreadable checkpoint folders to DIR/unreadable_checkpoints/ (kept, not lost)."""
  target = path(workdir, UNREADABLE)
  target.mkdir(parents=True, exist_ok=True)
  for step in steps:
    source = path(workdir, CHECKPOINTS, str(step))
    destination = target / f'{step}-{time.strftime("%Y%m%d-%H%M%S")}'
    source.rename(destination)
    logging.warning('Moved the unreadable checkpoint %s to %s.', source, destination)
