"""Keypoints from a trained run: restore a workdir's checkpoint, run the jitted eval step.

`restore(config, workdir)` gives a `Restored` run; `predict_split` / `eval_outputs` run
its eval step (T' = PPL.estimate) over `input_pipeline.create_eval_dataset` batches.
Training's end-of-run evaluation uses the same eval step; nothing here imports the
training loop or the losses.
"""

import dataclasses
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional

from absl import logging
import jax
import ml_collections
import numpy as np

from ppl_jax import input_pipeline
from ppl_jax import sharding
from ppl_jax import train_state
from ppl_jax import workdir as workdir_lib
from ppl_jax.data import base
from ppl_jax.models.ppl import PPL

_OVERLAY_FRAMES = 8


def make_eval_step(layout: train_state.StateLayout) -> Callable:
  """Jitted eval_step(state, batch) -> batch with 'predicted' [B, N, 2] added, replicated."""
  model = layout.model

  def eval_step(state, batch):
    keypoints, _ = model.apply(train_state.model_variables(state), batch['image'],
                               train=False, method=PPL.estimate)
    return dict(batch, predicted=keypoints)

  return jax.jit(eval_step, in_shardings=(layout.shardings, sharding.batch_sharding(layout.mesh)),
                 out_shardings=sharding.replicated(layout.mesh))


def _local_rows(batch: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
  """This process's contiguous share of a batch every process read in full."""
  count, index = jax.process_count(), jax.process_index()
  return {k: np.split(np.asarray(v), count)[index] for k, v in batch.items()}


def eval_outputs(eval_step: Callable, mesh: jax.sharding.Mesh, state,
                 batches: Iterable[Dict[str, np.ndarray]]) -> Iterator[Dict[str, np.ndarray]]:
  """`eval_step` on `input_pipeline.create_eval_dataset` batches, padding rows dropped.

  Yields per batch 'predicted' [b, N, 2], 'keypoints' [b, G, 2] (x, y in [-1, 1]),
  'visible' bool [b, G], the input 'image' [b, H, W, 3] and the source's 'video' index [b].
  """
  for batch in batches:
    rows = _local_rows({k: batch[k] for k in ('image', 'keypoints', 'visible', 'valid')})
    out = jax.device_get(eval_step(state, sharding.shard_batch(rows, mesh)))
    valid = np.asarray(out['valid'], bool)
    yield {'predicted': np.asarray(out['predicted'])[valid],
           'keypoints': np.asarray(out['keypoints'])[valid],
           'visible': np.asarray(out['visible'], bool)[valid],
           'image': np.asarray(batch['image'])[valid],
           'video': np.asarray(batch['video'])[valid]}


@dataclasses.dataclass
class Restored:
  """A restored run: its model, the train state of `step` and its variables."""
  config: ml_collections.ConfigDict
  workdir: str
  layout: train_state.StateLayout
  eval_step: Callable
  state: Any
  step: int
  steps: List[int]          # every kept checkpoint step, ascending
  variables: Dict[str, Any]  # for model.apply: params (+ batch_stats, memory)

  @property
  def model(self) -> PPL:
    return self.layout.model

  def restore_step(self, step: int) -> Dict[str, Any]:
    """Model variables of another kept checkpoint."""
    _, state = workdir_lib.restore_state(self.workdir, self.config,
                                         self.layout.abstract_state, step, steps=self.steps)
    return train_state.model_variables(state)


def from_state(config: ml_collections.ConfigDict, workdir: str,
               layout: train_state.StateLayout, state: Any, step: int,
               steps: List[int]) -> Restored:
  return Restored(config=config, workdir=workdir, layout=layout,
                  eval_step=make_eval_step(layout), state=state, step=step, steps=steps,
                  variables=train_state.model_variables(state))


def restore(config: ml_collections.ConfigDict, workdir: str,
            step: Optional[int] = None) -> Restored:
  """Restores checkpoint `step` of `workdir` (default: the newest that reads)."""
  layout = train_state.state_layout(config, sharding.make_mesh())
  steps = workdir_lib.checkpoint_steps(workdir)
  step, state = workdir_lib.restore_state(workdir, config, layout.abstract_state, step,
                                          steps=steps)
  logging.info('Restored step %d of %s (kept: %s)', step, workdir, steps)
  return from_state(config, workdir, layout, state, step, steps)


def eval_batches(config, source: base.VideoSource, max_frames: int = 0
                 ) -> Iterator[Dict[str, np.ndarray]]:
  """`input_pipeline.create_eval_dataset` batches, limited to the first max_frames
  labelled frames (0 = all) by clearing 'valid' beyond them."""
  count = 0
  dataset = input_pipeline.create_eval_dataset(config, source,
                                               batch_size=config.eval_batch_size)
  for batch in dataset:
    if max_frames and count >= max_frames:
      return
    valid = np.asarray(batch['valid'], bool).copy()
    if max_frames:
      valid[np.flatnonzero(valid)[max_frames - count:]] = False
    count += int(valid.sum())
    yield dict(batch, valid=valid)


@dataclasses.dataclass
class Predictions:
  """Keypoints on labelled frames, all (x, y) in [-1, 1].

  predicted [F, N, 2]; keypoints (ground truth) [F, G, 2]; visible bool [F, G];
  first_images [<=8, S, S, 3] in [-1, 1] and first_predicted [<=8, N, 2] (figures);
  video int [F], each frame's video index in the source.
  """
  predicted: np.ndarray
  keypoints: np.ndarray
  visible: np.ndarray
  first_images: np.ndarray
  first_predicted: np.ndarray
  video: np.ndarray


def predict_split(restored: Restored, split: str, max_frames: int = 0, *,
                  source: Optional[base.VideoSource] = None) -> Predictions:
  """Runs the jitted eval step on the labelled frames of `split` (or `source`)."""
  config = restored.config
  if source is None:
    source = input_pipeline.build_source(config.data, split)
  predicted, keypoints, visible, images, videos = [], [], [], [], []
  for out in eval_outputs(restored.eval_step, restored.layout.mesh, restored.state,
                          eval_batches(config, source, max_frames)):
    predicted.append(out['predicted'])
    keypoints.append(out['keypoints'])
    visible.append(out['visible'])
    videos.append(out['video'])
    if sum(len(i) for i in images) < _OVERLAY_FRAMES:
      images.append(out['image'])
  if not predicted or not sum(len(p) for p in predicted):
    raise ValueError(f'The {split!r} split of config.data.name={config.data.name!r} '
                     'has no labelled frames to evaluate.')
  predicted = np.concatenate(predicted)
  images = np.concatenate(images)[:_OVERLAY_FRAMES]
  return Predictions(predicted, np.concatenate(keypoints), np.concatenate(visible),
                     images, predicted[:len(images)], np.concatenate(videos))
