"""Checkpoints of the train state and the data iterator (orbax), and preemption.

A checkpoint holds two items: 'state' (the train-state pytree, StandardSave) and
'data_iter' (the grain iterator position, grain's orbax handler), so a resumed run
continues with exactly the batches the interrupted one would have read. Saves are
asynchronous where the backend allows; unfinished saves (a killed run) stay in
temporary folders that orbax ignores, so restore always sees complete steps.
"""

import signal
import threading
from typing import Any, Optional

from absl import logging
import grain
import jax
from jax.experimental import multihost_utils
import numpy as np
import orbax.checkpoint as ocp
from orbax.checkpoint.checkpoint_managers import preservation_policy
from orbax.checkpoint.checkpoint_managers import save_decision_policy


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

  def restore(self, abstract_state: Any, data_iter: Any,
              step: Optional[int] = None) -> Any:
    """The state at `step` (default: latest), laid out like `abstract_state`.

    `abstract_state` is a pytree of `jax.ShapeDtypeStruct`s carrying shardings;
    `data_iter` is moved to its saved position in place.
    """
    step = self.manager.latest_step() if step is None else step
    restored = self.manager.restore(
        step,
        args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract_state),
            data_iter=grain.checkpoint.CheckpointRestore(data_iter)))
    logging.info('Restored checkpoint of step %d from %s', step,
                 self.manager.directory)
    return restored['state']

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
