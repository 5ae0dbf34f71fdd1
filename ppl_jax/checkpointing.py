"""Checkpoints of the train state and the data iterator (orbax), and preemption.

A checkpoint holds two items: 'state' (the train-state pytree, StandardSave) and
'data_iter' (the grain iterator position, grain's orbax handler), so a resumed run
continues with exactly the batches the interrupted one would have read. Saves are
asynchronous where the backend allows; unfinished saves (a killed run) stay in
temporary folders that orbax ignores. A complete step whose files were damaged later is
skipped on restore (`restore_newest_readable`); a checkpoint of another model is refused
from its metadata before any array is read (`check_layout`).
"""

import os
import signal
import threading
from typing import Any, Callable, List, Optional, Tuple

from absl import logging
import grain
import jax
import ml_collections
from jax.experimental import multihost_utils
import numpy as np
import orbax.checkpoint as ocp
from orbax.checkpoint.checkpoint_managers import preservation_policy
from orbax.checkpoint.checkpoint_managers import save_decision_policy


class UnreadableCheckpointError(ValueError):
  """No checkpoint of a folder could be restored."""


def _first_line(error: Exception, limit: int = 160) -> str:
  text = (str(error).strip().splitlines() or [type(error).__name__])[0]
  return f'{type(error).__name__}: {text[:limit]}'


class CheckpointMismatchError(ValueError):
  """A checkpoint holds another model's state than the config builds."""


def _key_name(key) -> str:
  # The saved metadata has dicts and lists where the state has optax's named tuples.
  for attribute in ('key', 'name', 'idx'):
    if hasattr(key, attribute):
      return str(getattr(key, attribute))
  return str(key)


def _leaf_layouts(tree) -> dict:
  return {'/'.join(_key_name(k) for k in p): (tuple(leaf.shape), np.dtype(leaf.dtype).name)
          for p, leaf in jax.tree_util.tree_leaves_with_path(tree) if hasattr(leaf, 'shape')}


def check_layout(state_dir: str, abstract_state: Any,
                 config: Optional[ml_collections.ConfigDict]) -> None:
  """Raises CheckpointMismatchError if the state saved in `state_dir` (its metadata only,
  no array is read) has other leaves, shapes or dtypes than `abstract_state`."""
  stored = _leaf_layouts(ocp.StandardCheckpointer().metadata(state_dir).item_metadata)
  if not stored:   # orbax returns an empty tree, with a warning, for unreadable metadata
    raise ValueError(f'{state_dir}/_METADATA cannot be read')
  wanted = _leaf_layouts(abstract_state)
  if stored == wanted:
    return
  differences = sorted((k for k in stored.keys() | wanted.keys() if stored.get(k) != wanted.get(k)),
                       key=lambda k: (not k.startswith('params/'), k))
  def layout(entry):
    return 'absent' if entry is None else f'{entry[1]}{list(entry[0])}'

  shown = '; '.join(f'{k}: {layout(stored.get(k))} saved, {layout(wanted.get(k))} built'
                    for k in differences[:2])
  raise CheckpointMismatchError(
      f'{state_dir} holds another model than the config builds ({len(differences)} '
      f'arrays differ, e.g. {shown}). Pass the config the run was trained with (its '
      f'workdir/config.json{_config_summary(config)}), or a new --workdir.')


def _config_summary(config: Optional[ml_collections.ConfigDict]) -> str:
  if config is None:
    return ''
  return (f'; this one has data.image_size={config.data.image_size}, '
          f'model.num_parts={config.model.num_parts}')


def mismatch_hint(config: Optional[ml_collections.ConfigDict]) -> str:
  """What to check when no checkpoint fits the model built from `config`."""
  if config is None:
    return ''
  return (f'If the config is not the one the run was trained with (data.image_size='
          f'{config.data.image_size}, model.num_parts={config.model.num_parts}), pass that '
          'one (its workdir/config.json); ')


def restore_newest_readable(steps: List[int], restore_step: Callable[[int], Any], *,
                            directory: str, config: Optional[ml_collections.ConfigDict]
                            ) -> Tuple[int, Any, List[int]]:
  """Restores the newest of `steps` that reads, warning about each one skipped.

  Returns (step, restored, skipped steps). Raises UnreadableCheckpointError naming the
  folder to remove when none reads.
  """
  failures = []
  for step in sorted(steps, reverse=True):
    try:
      restored = restore_step(step)
    except CheckpointMismatchError:
      raise   # every checkpoint of a run has one layout: an older one would not fit either
    except Exception as e:   # orbax, tensorstore, grain and json raise many types
      logging.warning('The checkpoint of step %d in %s cannot be read (%s); trying the '
                      'previous one.', step, directory, _first_line(e))
      failures.append((step, e))
      continue
    return step, restored, [s for s, _ in failures]
  details = '; '.join(f'step {s}: {_first_line(e)}' for s, e in failures)
  raise UnreadableCheckpointError(
      f'No checkpoint in {directory} can be restored ({details}). {mismatch_hint(config)}'
      f'if the files are damaged, remove {directory} to train from scratch.')


class Checkpointer:
  """Periodic + forced saves, keep-last-K, restore of the latest step."""

  def __init__(self, directory: str, *, every_steps: int, keep: int,
               use_async: bool = True):
    if every_steps > 0:
      policy = save_decision_policy.FixedIntervalPolicy(every_steps)
    else:  # Only forced (final, preemption) saves.
      policy = save_decision_policy.SpecificStepsPolicy(())
    options = ocp.CheckpointManagerOptions(
        save_decision_policy=policy,
        preservation_policy=preservation_policy.LatestN(keep),
        enable_async_checkpointing=use_async,
        create=True)
    self.manager = ocp.CheckpointManager(
        directory, options=options, item_names=('state', 'data_iter'))
    self._last_saved: Optional[int] = self.manager.latest_step()

  def latest_step(self) -> Optional[int]:
    return self.manager.latest_step()

  def save(self, step: int, state: Any, data_iter: Any, *,
           force: bool = False) -> bool:
    """Saves at `step` if the interval policy (or `force`) says so; True if saved."""
    if step == self._last_saved:
      return False
    saved = self.manager.save(
        step,
        args=ocp.args.Composite(
            state=ocp.args.StandardSave(state),
            data_iter=grain.checkpoint.CheckpointSave(data_iter)),
        force=force)
    if saved:
      self._last_saved = step
      logging.info('Saving checkpoint at step %d to %s', step,
                   self.manager.directory)
    return saved

  def restore(self, abstract_state: Any, data_iter: Any, *,
              config: Optional[ml_collections.ConfigDict] = None,
              step: Optional[int] = None) -> Tuple[int, Any, List[int]]:
    """(step, state, skipped steps) of checkpoint `step`, by default of the newest one that
    reads (older ones are tried, with a warning, when it is damaged). The state is laid out
    like `abstract_state` (`jax.ShapeDtypeStruct`s carrying shardings); `data_iter` is moved
    to its saved position in place. `config` only words the error when none reads.
    """
    def restore_step(step):
      # Checked on the metadata first: restoring a misfit starts reads that fail noisily.
      check_layout(os.path.join(str(self.manager.directory), str(step), 'state'),
                   abstract_state, config)
      return self.manager.restore(step, args=ocp.args.Composite(
          state=ocp.args.StandardRestore(abstract_state),
          data_iter=grain.checkpoint.CheckpointRestore(data_iter)))['state']

    step, state, skipped = restore_newest_readable(
        self.manager.all_steps() if step is None else [step], restore_step,
        directory=str(self.manager.directory), config=config)
    logging.info('Restored checkpoint of step %d from %s', step, self.manager.directory)
    return step, state, skipped

  def reload(self) -> None:
    """Rereads the folder (after checkpoints were moved out of it)."""
    self.manager.reload()
    self._last_saved = self.manager.latest_step()

  def close(self) -> None:
    self.manager.wait_until_finished()
    self.manager.close()


class PreemptionWatcher:
  """SIGTERM or SIGINT (Ctrl-C) sets a flag; `should_stop()` reports it, agreed by all
  processes. A second SIGINT interrupts at once (KeyboardInterrupt, nothing saved).

  The handler only sets a flag: saving from inside a signal handler could
  interleave with a running step. The loop checks `should_stop()` every step and
  saves at the step it stops at.
  """

  SIGNALS = (signal.SIGTERM, signal.SIGINT)

  def __init__(self):
    self._event = threading.Event()
    self._previous = {}
    self.received = None   # name of the first signal received

  def install(self) -> None:
    if threading.current_thread() is threading.main_thread():
      self._previous = {s: signal.signal(s, self._handle) for s in self.SIGNALS}

  def uninstall(self) -> None:
    for signum, previous in self._previous.items():
      signal.signal(signum, previous)
    self._previous = {}

  def _handle(self, signum, frame) -> None:
    del frame
    if self._event.is_set() and signum == signal.SIGINT:
      raise KeyboardInterrupt
    self.received = signal.Signals(signum).name
    self._event.set()

  def should_stop(self) -> bool:
    flag = self._event.is_set()
    if jax.process_count() > 1:
      # Every process must stop at the same step (saving is collective).
      flags = multihost_utils.process_allgather(np.asarray(flag))
      flag = bool(np.any(flags))
    return flag
