"""Input pipeline: video sources -> grain datasets of training pairs and eval batches.

Training elements are pairs (I, I_ref) of one video (SPEC 1.5): I_ref is another frame
of the same video at a frame gap in [min_frame_gap, max_frame_gap], or, with
`config.model.context == 'masked_self'`, I itself cut into mask_grid x mask_grid blocks,
a fraction of them zeroed. Both images are resized to `config.data.image_size` squares, optionally flipped
together, and normalised to float32 [-1, 1]. All randomness (shuffle, reference frame,
flip, mask) derives from the seed and the element's position in the repeated stream, so
the stream is reproducible and its iterator state (`get_state()` / `set_state()`, or
`grain.checkpoint.CheckpointSave/CheckpointRestore` with orbax) resumes at the exact next
batch (grain's restriction: restore with the same `config.data.num_workers`).
"""

import os
import threading
from typing import Any, Dict, Optional, Sequence

from absl import logging
import grain
import ml_collections
import numpy as np
from PIL import Image

from ppl_jax.data import background as background_lib
from ppl_jax.data import base
from ppl_jax.data import raw

# Decoding and resizing (Pillow) release the GIL, so a few reader threads per process
# overlap them; more than this only adds contention on small machines.
_READ_THREADS = 4

_SOURCE_NAMES = ('synthetic', 'h36m', 'taichi', 'custom')
# 'train': the videos training pairs come from. 'test': the labelled evaluation frames.
# 'train_eval': labelled frames of the training split (to fit the regression protocol).
SPLITS = ('train', 'test', 'train_eval')


def build_source(data_config: ml_collections.ConfigDict, split: str) -> base.VideoSource:
  """The `VideoSource` named by `data_config.name` for `split` (one of `SPLITS`).

  With `data_config.data_dir` set, reads the ArrayRecord files written by
  `python -m ppl_jax.data.prepare` instead of the raw dataset. `seed` only seeds the
  synthetic generator (its videos are a pure function of it).
  """
  name = data_config.name
  if name not in _SOURCE_NAMES:
    raise ValueError(f'config.data.name={name!r} is unknown; use one of {_SOURCE_NAMES}.')
  if split not in SPLITS:
    raise ValueError(f'split={split!r}: use one of {SPLITS}.')
  if data_config.get('data_dir', ''):
    # Lazy imports: each source's dependencies load only when it is used.
    from ppl_jax.data import tfds_builders  # pylint: disable=g-import-not-at-top
    return tfds_builders.PreparedSource(data_config.data_dir, name, split)
  if name == 'synthetic':
    from ppl_jax.data import synthetic  # pylint: disable=g-import-not-at-top
    return synthetic.from_config(data_config, 'train' if split == 'train_eval' else split)
  root = data_config.get('root', '')
  if not root:
    raise ValueError(
        f'config.data.root is empty but config.data.name={name!r} reads a raw dataset: '
        'set config.data.root to its folder (or config.data.data_dir to prepared data).')
  if not os.path.isdir(root):
    raise FileNotFoundError(
        f'config.data.root={root!r} (config.data.name={name!r}) is not a directory.')
  source = raw.raw_source(name, root, split, labels=data_config.get('labels', '') or None,
                          on_bad=data_config.get('on_bad_video', 'error'),
                          video_cache_frames=data_config.get('video_cache_frames', 16))
  if hasattr(source, 'frame_size'):
    warn_if_upscaled(source, data_config.image_size)
  return source


def warn_if_upscaled(source: base.VideoSource, size: int) -> None:
  """One warning naming the videos whose frames are enlarged to `size` (by the shorter side);
  enlarging adds no detail and blurs the parts the model has to find."""
  small = []
  for v in range(source.num_videos):
    width, height = source.frame_size(v)
    if min(width, height) < size:
      small.append(f'{source.video_name(v)} ({width}x{height})')
  if small:
    logging.warning(
        '%d of %d videos are smaller than config.data.image_size=%d and are upscaled: %s. '
        'Set config.data.image_size to at most their size (a multiple of 16) or use larger '
        'videos.', len(small), source.num_videos, size, ', '.join(small[:5])
        + (', ...' if len(small) > 5 else ''))


def _gap_bounds(min_gap: int, max_gap: int):
  """(g, M): a reference t_ref != t needs g <= |t - t_ref| <= M (M = None: unbounded)."""
  g = max(1, int(min_gap))
  if max_gap and max_gap > 0:
    if max_gap < g:
      raise ValueError(f'config.data.max_frame_gap={max_gap} < config.data.min_frame_gap='
                       f'{min_gap}: no reference frame can satisfy both.')
    return g, int(max_gap)
  return g, None


def pair_index(source: base.VideoSource, *, context: str = 'reference_frame',
               min_frame_gap: int = 1, max_frame_gap: int = 0,
               on_bad_video: str = 'error') -> np.ndarray:
  """int64 [E, 2] (video, frame) of every frame that has a valid reference frame.

  With `context='reference_frame'` a video needs more than max(1, min_frame_gap) frames;
  frames in the middle of a short video with no frame at the required gap are left out.
  A video that is too short raises (naming it and the counts) or, with
  `on_bad_video='warn'`, is skipped and counted in a warning.
  """
  if on_bad_video not in ('error', 'warn'):
    raise ValueError(f"config.data.on_bad_video={on_bad_video!r}: use 'error' or 'warn'.")
  if context == 'masked_self':
    need = 1
  elif context == 'reference_frame':
    g, _ = _gap_bounds(min_frame_gap, max_frame_gap)
    need = g + 1
  else:
    raise ValueError(f"config.model.context={context!r}: use 'reference_frame' or "
                     "'masked_self'.")
  rows = []
  skipped = []
  for v in range(source.num_videos):
    n = source.num_frames(v)
    if n < need:
      message = (f'video {source.video_name(v)!r} has {n} frame(s) but the pair sampler '
                 f'needs at least {need} (context={context!r}, min_frame_gap='
                 f'{min_frame_gap})')
      if on_bad_video == 'error':
        raise ValueError(message + "; remove it or set config.data.on_bad_video='warn'.")
      skipped.append(message)
      continue
    t = np.arange(n)
    if context == 'reference_frame':
      t = t[(t - g >= 0) | (t + g <= n - 1)]
    rows.append(np.stack([np.full_like(t, v), t], axis=1))
  if skipped:
    logging.warning('Skipped %d of %d videos too short for the pair sampler, e.g. %s',
                    len(skipped), source.num_videos, skipped[0])
  if not rows:
    raise ValueError(f'No training pairs: all {source.num_videos} videos are too short '
                     f'(need {need} frames each).')
  return np.concatenate(rows).astype(np.int64)


def sample_reference(t: int, n: int, g: int, max_gap: Optional[int],
                     rng: np.random.Generator) -> int:
  """Uniform t_ref in [0, n) with g <= |t - t_ref| <= max_gap (None = unbounded)."""
  reach = n if max_gap is None else max_gap
  lo_start, lo_end = max(0, t - reach), t - g  # inclusive range below t
  hi_start, hi_end = t + g, min(n - 1, t + reach)  # inclusive range above t
  below = max(0, lo_end - lo_start + 1)
  above = max(0, hi_end - hi_start + 1)
  if below + above == 0:
    raise ValueError(f'frame {t} of a {n}-frame video has no reference at gap >= {g}.')
  u = int(rng.integers(below + above))
  return lo_start + u if u < below else hi_start + (u - below)


def resize_uint8(frame: np.ndarray, size: int) -> np.ndarray:
  """uint8 [H, W, 3] -> uint8 [size, size, 3] (Pillow bilinear, antialiased when shrinking)."""
  frame = np.asarray(frame)
  if frame.ndim != 3 or frame.shape[-1] != 3 or frame.dtype != np.uint8:
    raise ValueError(f'A source frame must be uint8 [H, W, 3]; got {frame.dtype} '
                     f'{frame.shape}.')
  if frame.shape[0] == size and frame.shape[1] == size:
    return frame
  return np.asarray(Image.fromarray(frame).resize((size, size), Image.BILINEAR))


def to_float(image: np.ndarray) -> np.ndarray:
  """uint8 -> float32 in [-1, 1]."""
  return image.astype(np.float32) * np.float32(2.0 / 255.0) - np.float32(1.0)


def block_mask(size: int, grid: int, ratio: float, rng: np.random.Generator, *,
               sampling: str = 'bernoulli') -> np.ndarray:
  """float32 [size, size]: the image cut into grid x grid square blocks, 0 on dropped ones, else 1.

  `grid` (blocks per side, the release's `block`) must divide `size`. 'bernoulli' (the
  release) drops each block independently with probability `ratio`; 'exact' drops
  round(ratio * grid^2) blocks, so the masked fraction is fixed.
  """
  if size % grid:
    raise ValueError(f'config.model.mask_grid={grid} must divide the image side {size}.')
  num_blocks = grid * grid
  if sampling == 'bernoulli':
    keep = (rng.random(num_blocks) >= ratio).astype(np.float32)
  elif sampling == 'exact':
    keep = np.ones(num_blocks, np.float32)
    keep[rng.choice(num_blocks, size=int(round(ratio * num_blocks)), replace=False)] = 0.0
  else:
    raise ValueError(f"config.model.mask_sampling={sampling!r}: use 'bernoulli' or 'exact'.")
  block = size // grid
  return np.repeat(np.repeat(keep.reshape(grid, grid), block, axis=0), block, axis=1)


class ResizedFrames(base.VideoSource):
  """`source` with every frame resized to size x size uint8, each video decoded once.

  The first read of a video decodes all its frames in order (sequential decoding, no
  seeks), resizes them as `resize_uint8` does and keeps them in memory, so reading cost
  no longer depends on a video's length or codec. Training input only: labels stay in the
  source's pixels. Each process (grain worker) fills its own copy.
  """

  def __init__(self, source: base.VideoSource, size: int):
    self.source = source
    self.size = int(size)
    self._reset()

  def _reset(self):
    self._frames = {}                       # video -> uint8 [F, S, S, 3]
    self._lock = threading.Lock()

  def __getstate__(self):
    state = self.__dict__.copy()
    del state['_frames'], state['_lock']
    return state

  def __setstate__(self, state):
    self.__dict__.update(state)
    self._reset()

  def nbytes(self) -> int:
    """Bytes the cache holds once every video is read."""
    frames = sum(self.source.num_frames(v) for v in range(self.source.num_videos))
    return frames * self.size * self.size * 3

  @property
  def num_videos(self) -> int:
    return self.source.num_videos

  def num_frames(self, video: int) -> int:
    return self.source.num_frames(video)

  def frame(self, video: int, index: int) -> np.ndarray:
    frames = self._frames.get(video)
    if frames is None:
      with self._lock:   # one decode per video, also with several reader threads
        frames = self._frames.get(video)
        if frames is None:
          frames = self._decode(video)
          self._frames[video] = frames
    return frames[index]

  def _decode(self, video: int) -> np.ndarray:
    count = self.source.num_frames(video)
    logging.info('Decoding %s (%d frames) into the frame cache at %d px.',
                 self.source.video_name(video), count, self.size)
    frames = np.empty((count, self.size, self.size, 3), np.uint8)
    for t in range(count):
      frames[t] = resize_uint8(self.source.frame(video, t), self.size)
    return frames

  def labels(self, video: int, index: int):
    return self.source.labels(video, index)

  def video_name(self, video: int) -> str:
    return self.source.video_name(video)


def cached_frames(source: base.VideoSource, data_config: ml_collections.ConfigDict
                  ) -> base.VideoSource:
  """`ResizedFrames(source)` when it fits config.data.frame_cache_bytes, else `source`
  (with a warning saying what to change)."""
  budget = data_config.get('frame_cache_bytes', 0)
  if not budget:
    return source
  cached = ResizedFrames(source, data_config.image_size)
  need = cached.nbytes()
  if need > budget:
    logging.warning(
        'The training videos need %.2f GiB decoded at %d px, more than '
        'config.data.frame_cache_bytes=%d (%.2f GiB): frames are decoded on every read '
        'instead, which is slow for long compressed videos. Raise '
        'config.data.frame_cache_bytes if memory allows (times config.data.num_workers, '
        'one copy per worker), lower config.data.image_size, or train on fewer videos.',
        need / 2**30, data_config.image_size, budget, budget / 2**30)
    return source
  logging.info('Frame cache: %.1f MiB for %d videos at %d px.', need / 2**20,
               source.num_videos, data_config.image_size)
  return cached


class ReadPair(grain.transforms.RandomMap):
  """(video, frame) -> {'image', 'reference'}: uint8 [S, S, 3] (+ 'keep' for masked_self,
  + 'foreground' uint8 [S, S] when `foreground_threshold` > 0: I against its video's
  median background, see `ppl_jax.data.background`).

  Elements stay uint8 until `Normalize` runs on whole batches in the consuming process:
  worker processes then ship a quarter of the bytes.
  """

  def __init__(self, source: base.VideoSource, *, image_size: int, context: str,
               min_frame_gap: int, max_frame_gap: int, random_flip: bool,
               mask_grid: int, mask_ratio: float, mask_sampling: str = 'bernoulli',
               foreground_threshold: float = 0.0,
               background_frames: int = 32):
    self.source = source
    self.image_size = int(image_size)
    self.context = context
    self.gap, self.max_gap = _gap_bounds(min_frame_gap, max_frame_gap)
    self.random_flip = bool(random_flip)
    self.mask_grid = int(mask_grid)
    self.mask_ratio = float(mask_ratio)
    self.mask_sampling = mask_sampling
    self.foreground_threshold = float(foreground_threshold)
    self.background_frames = int(background_frames)
    self._backgrounds = {}   # video -> uint8 [S, S, 3], filled lazily in each process

  def __getstate__(self):
    state = self.__dict__.copy()
    state['_backgrounds'] = {}
    return state

  def background(self, video: int) -> np.ndarray:
    """The median background of `video` at the training size (cached)."""
    if video not in self._backgrounds:
      indices = background_lib.frame_indices(self.source.num_frames(video),
                                             self.background_frames)
      self._backgrounds[video] = background_lib.estimate_background(np.stack(
          [resize_uint8(self.source.frame(video, int(t)), self.image_size) for t in indices]))
    return self._backgrounds[video]

  def random_map(self, element, rng: np.random.Generator) -> Dict[str, np.ndarray]:
    video, t = int(element[0]), int(element[1])
    image = resize_uint8(self.source.frame(video, t), self.image_size)
    if self.context == 'reference_frame':
      t_ref = sample_reference(t, self.source.num_frames(video), self.gap, self.max_gap, rng)
      reference = resize_uint8(self.source.frame(video, t_ref), self.image_size)
    else:
      reference = image
    foreground = None
    if self.foreground_threshold > 0:
      foreground = background_lib.foreground_mask(image, self.background(video),
                                                  self.foreground_threshold)
    if self.random_flip and rng.random() < 0.5:
      image, reference = image[:, ::-1], reference[:, ::-1]
      foreground = None if foreground is None else foreground[:, ::-1]
    out = {'image': np.ascontiguousarray(image), 'reference': np.ascontiguousarray(reference)}
    if foreground is not None:
      out['foreground'] = np.ascontiguousarray(foreground)
    if self.context == 'masked_self':
      mask = block_mask(self.image_size, self.mask_grid, self.mask_ratio, rng,
                        sampling=self.mask_sampling)
      out['keep'] = mask.astype(np.uint8)
    return out


class Normalize(grain.transforms.Map):
  """uint8 batch -> {'image', 'reference'} float32 [B, S, S, 3] in [-1, 1].

  With a 'keep' mask (masked_self) the reference is zeroed (0 in [-1, 1]) where it is 0.
  A 'foreground' mask passes through as float32 [B, S, S] in {0, 1}.
  """

  def map(self, batch: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
    reference = to_float(batch['reference'])
    if 'keep' in batch:
      reference *= batch['keep'][..., None]
    out = {'image': to_float(batch['image']), 'reference': reference}
    if 'foreground' in batch:
      out['foreground'] = batch['foreground'].astype(np.float32)
    return out


def uses_foreground(loss_config: ml_collections.ConfigDict) -> bool:
  """Whether a loss reads the batches' foreground masks (L_fg or L_on)."""
  return loss_config.foreground_weight > 0 or loss_config.on_foreground_weight > 0


def create_train_dataset(config: ml_collections.ConfigDict, source: base.VideoSource, *,
                         seed: int, process_index: int = 0,
                         process_count: int = 1) -> grain.IterDataset:
  """Infinite, shuffled grain dataset of training batches for this process.

  Yields {'image': float32 [B, S, S, 3], 'reference': float32 [B, S, S, 3]} in [-1, 1]
  (and 'foreground' float32 [B, S, S] when `uses_foreground(config.loss)`) with B = config.batch_size // process_count and S = config.data.image_size. Each
  process reads the pairs `process_index::process_count` (disjoint, covering). Iterate
  with `iter(ds)`; the iterator's `get_state()` / `set_state()` resume exactly.
  """
  if config.batch_size % process_count:
    raise ValueError(f'config.batch_size={config.batch_size} is not divisible by the '
                     f'process count {process_count}.')
  local_batch = config.batch_size // process_count
  data = config.data
  index = pair_index(source, context=config.model.context,
                     min_frame_gap=data.min_frame_gap, max_frame_gap=data.max_frame_gap,
                     on_bad_video=data.get('on_bad_video', 'error'))
  ds = grain.MapDataset.source(index)[process_index::process_count]
  if len(ds) == 0:
    raise ValueError(f'Process {process_index} of {process_count} got no training pairs '
                     f'({len(index)} in total).')
  ds = ds.seed(seed).shuffle().repeat(None)
  ds = ds.random_map(ReadPair(
      cached_frames(source, data), image_size=data.image_size, context=config.model.context,
      min_frame_gap=data.min_frame_gap, max_frame_gap=data.max_frame_gap,
      random_flip=data.random_flip, mask_grid=config.model.mask_grid,
      mask_ratio=config.model.mask_ratio, mask_sampling=config.model.mask_sampling,
      foreground_threshold=(data.foreground_threshold if uses_foreground(config.loss)
                            else 0.0),
      background_frames=data.background_frames))
  prefetch = max(1, int(data.get('prefetch_buffer_size', 2))) * local_batch
  ds = ds.to_iter_dataset(grain.ReadOptions(num_threads=_READ_THREADS,
                                            prefetch_buffer_size=prefetch))
  ds = ds.batch(local_batch, drop_remainder=True)
  if data.num_workers > 0:
    ds = ds.mp_prefetch(grain.MultiprocessingOptions(
        num_workers=data.num_workers,
        per_worker_buffer_size=max(1, int(data.get('prefetch_buffer_size', 2)))))
  return ds.map(Normalize())


class ReadLabelledFrame(grain.transforms.Map):
  """(video, frame) -> eval example, or None for a frame without labels."""

  def __init__(self, source: base.VideoSource, image_size: int):
    self.source = source
    self.image_size = int(image_size)

  def map(self, element) -> Optional[Dict[str, Any]]:
    video, t = int(element[0]), int(element[1])
    labels = self.source.labels(video, t)
    if labels is None:
      return None
    frame = self.source.frame(video, t)
    height, width = frame.shape[:2]
    visible = np.asarray(labels.visible, bool)
    keypoints = base.pixels_to_normalized(labels.keypoints, width, height)
    keypoints = np.where(visible[:, None], keypoints, 0.0).astype(np.float32)
    return {'image': to_float(resize_uint8(frame, self.image_size)),
            'keypoints': keypoints, 'visible': visible, 'valid': np.bool_(True),
            'video': np.int32(video), 'frame': np.int32(t)}


class PadStack:
  """Stacks up to `batch_size` eval examples, padding to `batch_size` (valid=False)."""

  def __init__(self, batch_size: int):
    self.batch_size = batch_size

  def __call__(self, examples: Sequence[Dict[str, Any]]) -> Dict[str, np.ndarray]:
    batch = {k: np.stack([e[k] for e in examples]) for k in examples[0]}
    pad = self.batch_size - len(examples)
    if pad:
      for k, v in batch.items():
        fill = -1 if k in ('video', 'frame') else 0
        batch[k] = np.concatenate([v, np.full((pad,) + v.shape[1:], fill, v.dtype)])
    return batch


def create_eval_dataset(config: ml_collections.ConfigDict, source: base.VideoSource, *,
                        batch_size: int) -> grain.IterDataset:
  """All labelled frames of `source` in (video, frame) order, in padded batches.

  Yields {'image': float32 [B, S, S, 3] in [-1, 1], 'keypoints': float32 [B, G, 2]
  (x, y) normalised to [-1, 1] with each frame's own size (0 where not visible),
  'visible': bool [B, G], 'valid': bool [B] (False on the padding of the last batch),
  'video': int32 [B], 'frame': int32 [B] (-1 on padding)}. One pass, deterministic.
  """
  frames = [(v, t) for v in range(source.num_videos) for t in range(source.num_frames(v))]
  ds = grain.MapDataset.source(np.asarray(frames, np.int64).reshape(-1, 2))
  ds = ds.map(ReadLabelledFrame(source, config.data.image_size))
  ds = ds.to_iter_dataset(grain.ReadOptions(num_threads=_READ_THREADS,
                                            prefetch_buffer_size=2 * batch_size))
  return ds.batch(batch_size, drop_remainder=False, batch_fn=PadStack(batch_size))
