"""Metrics to `workdir/metrics.jsonl` and TensorBoard (tensorboardX, no TensorFlow).

Only process 0 writes. Image summaries also go to `workdir/images/<name>_<step>.png`
so they can be looked at without TensorBoard. The workdir may be a local path or a URL
(gs://...), both reached through `etils.epath`; object stores cannot append, so there
metrics.jsonl and the event file are rewritten whole at each write (they stay small:
one line per logged step).
"""

import io
import json
import os
from typing import Dict, Mapping, Optional

from etils import epath
import jax
import numpy as np
from PIL import Image

from ppl_jax import workdir as workdir_lib
from ppl_jax.data import base
from ppl_jax.evaluation import figures


class _EpathEventFile:
  """A TensorBoard event file on an object store: written whole on every flush."""

  def __init__(self, path: str):
    self._path = epath.Path(path)
    self._buffer = io.BytesIO()

  def write(self, data: bytes) -> None:
    self._buffer.write(data)

  def flush(self) -> None:
    self._path.write_bytes(self._buffer.getvalue())

  def close(self) -> None:
    self.flush()


class _EpathEventFileFactory:
  """tensorboardX's writer factory for URL schemes, through epath (gcsfs for gs://),
  in place of its own google-cloud-storage one."""

  def open(self, path: str) -> _EpathEventFile:
    return _EpathEventFile(path)

  def directory_check(self, path: str) -> None:
    epath.Path(path).mkdir(parents=True, exist_ok=True)


class MetricWriter:
  """Scalars as JSON lines + TensorBoard scalars; images as TensorBoard + PNG."""

  def __init__(self, workdir: str, *, enabled: Optional[bool] = None):
    self.enabled = jax.process_index() == 0 if enabled is None else enabled
    self.workdir = workdir
    self._root = epath.Path(workdir)
    self._jsonl = None
    self._lines = None
    self._tb = None
    if self.enabled:
      self._root.mkdir(parents=True, exist_ok=True)
      jsonl = self._root / 'metrics.jsonl'
      if workdir_lib.is_url(workdir):
        # A resumed run continues the same file; a reader keeps the last line of each step.
        self._lines = [jsonl.read_text()] if jsonl.exists() else []
      else:
        self._jsonl = open(os.fspath(jsonl), 'a', buffering=1)   # line-buffered, appending
      import tensorboardX  # pylint: disable=g-import-not-at-top
      from tensorboardX import record_writer  # pylint: disable=g-import-not-at-top
      if workdir_lib.is_url(workdir):
        record_writer.register_writer_factory(os.fspath(workdir).split(':')[0],
                                              _EpathEventFileFactory())
      self._tb = tensorboardX.SummaryWriter(os.fspath(self._root / 'tensorboard'))

  def write_scalars(self, step: int, scalars: Mapping[str, float]) -> None:
    if not self.enabled:
      return
    values = {k: float(v) for k, v in scalars.items()}
    line = json.dumps({'step': int(step), **values}) + '\n'
    if self._jsonl is not None:
      self._jsonl.write(line)
    else:
      self._lines.append(line)
      (self._root / 'metrics.jsonl').write_text(''.join(self._lines))
    for name, value in values.items():
      self._tb.add_scalar(name, value, int(step))
    if self._jsonl is None:
      self._tb.flush()   # an object store shows the event file only once it is written

  def write_images(self, step: int, images: Mapping[str, np.ndarray]) -> None:
    """images: name -> uint8 [H, W, 3]."""
    if not self.enabled:
      return
    folder = self._root / 'images'
    folder.mkdir(parents=True, exist_ok=True)
    for name, image in images.items():
      self._tb.add_image(name, image, int(step), dataformats='HWC')
      png = io.BytesIO()
      Image.fromarray(image).save(png, format='png')
      (folder / f'{name}_{step:07d}.png').write_bytes(png.getvalue())

  def close(self) -> None:
    if self.enabled:
      if self._jsonl is not None:
        self._jsonl.close()
      self._tb.close()


def to_uint8(image: np.ndarray) -> np.ndarray:
  """float [..., 3] in [-1, 1] -> uint8 (clipped)."""
  image = (np.asarray(image, np.float32) + 1.0) * 127.5
  return np.clip(np.round(image), 0, 255).astype(np.uint8)


def draw_pose(image: np.ndarray, keypoints: np.ndarray, weights: np.ndarray, *,
              scale: int = 1) -> np.ndarray:
  """Keypoints and links over an image upscaled `scale` times (nearest neighbour).

  image: uint8 [H, W, 3]; keypoints [N, 2] (x, y) in [-1, 1]; weights [N, N] (link opacity
  w_ij / max(w), `figures.draw_pose_on_frame`). Returns uint8 [scale*H, scale*W, 3].
  """
  height, width = image.shape[:2]
  canvas = np.asarray(Image.fromarray(image).resize((width * scale, height * scale),
                                                    Image.NEAREST))
  points = base.normalized_to_pixels(keypoints, width, height).astype(np.float64)
  # Pixel centres of the upscaled image, at integers like the input's.
  return figures.draw_pose_on_frame(canvas, (points + 0.5) * scale - 0.5, weights)


def pose_summary(batch: Dict[str, np.ndarray], outputs: Dict[str, np.ndarray],
                 *, max_rows: int = 4, scale: int = 2) -> np.ndarray:
  """A grid, one row per example: input | reference | reconstruction | heatmap | pose.

  batch: 'image', 'reference' [B, H, W, 3] in [-1, 1]; outputs: 'recon' [B, H, W, 3],
  'heatmap' [B, H, W] in [0, max w], 'keypoints' [B, N, 2], 'connectivity' [N, N].
  Returns uint8 [rows*scale*H, 5*scale*W, 3].
  """
  rows = []
  weights = np.asarray(outputs['connectivity'])
  heatmaps = np.asarray(outputs['heatmap'], np.float32)
  for b in range(min(max_rows, len(batch['image']))):
    image = to_uint8(batch['image'][b])
    heat = heatmaps[b] / max(float(heatmaps[b].max()), 1e-12)
    heat = np.repeat((heat[..., None] * 255).astype(np.uint8), 3, axis=-1)
    tiles = [image, to_uint8(batch['reference'][b]), to_uint8(outputs['recon'][b]),
             heat]
    tiles = [np.asarray(Image.fromarray(t).resize(
        (t.shape[1] * scale, t.shape[0] * scale), Image.NEAREST)) for t in tiles]
    tiles.append(draw_pose(image, np.asarray(outputs['keypoints'][b]), weights,
                           scale=scale))
    rows.append(np.concatenate(tiles, axis=1))
  return np.concatenate(rows, axis=0)
