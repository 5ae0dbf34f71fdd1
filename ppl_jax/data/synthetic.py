"""The embedded synthetic benchmark: articulated figures moving on static backgrounds.

Every video shows one procedurally rendered figure (a front-view humanoid or a
side-view quadruped) with its own limb lengths, limb thickness and colours, moving
smoothly (joint angles are sums of a few sinusoids, plus a slow translation and
scale oscillation) in front of a static textured background (smooth noise, stripes,
blobs). Ground truth is exact: the joints are the end points of the drawn capsules.

Everything is a pure function of (seed, kind, split, video, frame): per-video
parameters come from `np.random.default_rng((seed, kind, split, video, stream))`,
so frames are identical in any call order, in any process, and train and test
videos are disjoint. Rendering is vectorised numpy on the bounding box of each limb
(15-18 capsules a frame); backgrounds and joint trajectories are cached per video.
"""

import dataclasses
import math
import threading
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from scipy import ndimage

from ppl_jax.data import base

KINDS = ('humanoid', 'quadruped')
SPLITS = ('train', 'test')
MIN_SIZE, MAX_SIZE = 64, 256

HUMANOID_JOINTS = (
    'head', 'neck', 'pelvis',
    'right_shoulder', 'right_elbow', 'right_wrist',
    'left_shoulder', 'left_elbow', 'left_wrist',
    'right_hip', 'right_knee', 'right_ankle',
    'left_hip', 'left_knee', 'left_ankle',
)
HUMANOID_SKELETON = (
    (0, 1), (1, 2),                  # head-neck, neck-pelvis (torso)
    (1, 3), (3, 4), (4, 5),          # right arm
    (1, 6), (6, 7), (7, 8),          # left arm
    (2, 9), (9, 10), (10, 11),       # right leg
    (2, 12), (12, 13), (13, 14),     # left leg
)

QUADRUPED_JOINTS = (
    'head', 'neck', 'withers', 'croup', 'tail_mid', 'tail_tip',
    'front_left_elbow', 'front_left_knee', 'front_left_paw',
    'front_right_elbow', 'front_right_knee', 'front_right_paw',
    'hind_left_stifle', 'hind_left_hock', 'hind_left_paw',
    'hind_right_stifle', 'hind_right_hock', 'hind_right_paw',
)
QUADRUPED_SKELETON = (
    (0, 1), (1, 2), (2, 3),          # head-neck, neck-withers, spine
    (3, 4), (4, 5),                  # tail
    (2, 6), (6, 7), (7, 8),          # front left leg
    (2, 9), (9, 10), (10, 11),       # front right leg
    (3, 12), (12, 13), (13, 14),     # hind left leg
    (3, 15), (15, 16), (16, 17),     # hind right leg
)

_JOINTS = {'humanoid': HUMANOID_JOINTS, 'quadruped': QUADRUPED_JOINTS}
_SKELETONS = {'humanoid': HUMANOID_SKELETON, 'quadruped': QUADRUPED_SKELETON}
_MARGIN = 0.05            # fraction of the frame kept free on every side
_MIN_RADIUS_PX = 1.5      # so every joint's nearest pixel is fully covered
_CACHE_BYTES = 64 << 20   # per process; backgrounds dominate (size^2 * 3 bytes each)


def _field_error(field: str, value, requirement: str) -> ValueError:
  return ValueError(
      f'config.data.synthetic.{field} = {value!r} is invalid: {requirement}.')


def _check_int(field: str, value, low: int, high: Optional[int] = None,
               hint: str = '') -> int:
  """`value` as an int in [low, high], or a ValueError naming the config field."""
  if (isinstance(value, bool) or not isinstance(value, (int, np.integer))
      or value < low or (high is not None and value > high)):
    bounds = f'in [{low}, {high}]' if high is not None else f'>= {low}'
    raise _field_error(field, value, f'need an integer {bounds}{hint}')
  return int(value)


def _direction(angle: np.ndarray) -> np.ndarray:
  """Unit vectors [..., 2] (x, y) in image axes (y down); angle 0 points down,
  pi/2 points right (+x), pi points up."""
  return np.stack([np.sin(angle), np.cos(angle)], axis=-1)


def _oscillation(rng: np.random.Generator, t: np.ndarray, *, centre: float,
                 amplitude: float, phase: Optional[float] = None,
                 frequency: Optional[float] = None) -> np.ndarray:
  """A smooth signal [T] in [centre - amplitude, centre + amplitude]: a random
  convex mix of 2-3 sinusoids with periods of 20-64 frames."""
  k = int(rng.integers(2, 4))
  freqs = rng.uniform(1 / 64, 1 / 20, size=k)
  phases = rng.uniform(0, 2 * np.pi, size=k)
  if frequency is not None:  # the leading term follows a shared gait
    freqs[0] = frequency
  if phase is not None:
    phases[0] = phase
  weights = rng.dirichlet(np.ones(k))
  waves = np.sin(2 * np.pi * freqs[:, None] * t[None, :] + phases[:, None])
  return centre + amplitude * (weights @ waves)


@dataclasses.dataclass
class _Capsule:
  """A segment between joints i and j (i == j: a disc) of one body part."""
  i: int
  j: int
  radius: float             # in figure units
  part: str                 # consecutive capsules of one part are painted at once
  colour: np.ndarray        # float32 [3] in [0, 255]


def _contrasting_colour(rng: np.random.Generator, luminance: float) -> np.ndarray:
  """A colour [3] in [0, 1] with the given Rec.601 luminance and a random hue."""
  # Chroma with zero luminance around a grey of the requested luminance keeps the
  # figure/background luminance gap regardless of the hue.
  chroma = rng.normal(size=3)
  chroma -= np.dot([0.299, 0.587, 0.114], chroma)
  chroma *= rng.uniform(0.15, 0.3) / max(np.abs(chroma).max(), 1e-6)
  return np.clip(luminance + chroma, 0.0, 1.0)


class SyntheticVideos(base.VideoSource):
  """Rendered articulated figures: `num_videos` videos of `frames_per_video` frames,
  each frame uint8 [size, size, 3], exact keypoints and skeleton.

  Args:
    kind: 'humanoid' (15 joints) or 'quadruped' (18 joints).
    num_videos: videos in this split (>= 1).
    frames_per_video: frames per video (>= 2).
    size: frame side in pixels, 64 to 256.
    seed: base seed; the same seed gives the same videos everywhere.
    split: 'train' or 'test'; the two splits never share a video.
  """

  def __init__(self, kind: str, num_videos: int, frames_per_video: int,
               size: int, seed: int = 0, split: str = 'train'):
    if split not in SPLITS:
      raise ValueError(f'SyntheticVideos split = {split!r}; use one of {SPLITS}.')
    if kind not in KINDS:
      raise _field_error('kind', kind, f'use one of {KINDS}')
    self._kind = kind
    self._split = split
    self._num_videos = _check_int(f'num_{split}_videos', num_videos, 1)
    self._frames = _check_int('frames_per_video', frames_per_video, 2,
                              hint=' (a training pair is two frames of a video)')
    self._size = _check_int('render_size', size, MIN_SIZE, MAX_SIZE,
                            hint=' pixels; the pipeline resizes to '
                            'config.data.image_size afterwards')
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
      raise ValueError(f'SyntheticVideos seed = {seed!r} (config.data.synthetic.seed): '
                       'need an integer >= 0.')
    self._seed = int(seed)
    self._init_cache()

  # --- pickling: caches and the lock stay in the process that made them. ---------

  def _init_cache(self):
    self._lock = threading.Lock()
    self._cache: Dict[int, tuple] = {}
    # Background (uint8) plus keypoint and radius tracks (float32) per video.
    entry_bytes = 3 * self._size**2 + 4 * self._frames * 3 * len(self.joint_names)
    self._cache_entries = max(1, _CACHE_BYTES // entry_bytes)

  def __getstate__(self):
    state = self.__dict__.copy()
    for key in ('_lock', '_cache', '_cache_entries'):
      del state[key]
    return state

  def __setstate__(self, state):
    self.__dict__.update(state)
    self._init_cache()

  # --- VideoSource ---------------------------------------------------------------

  @property
  def num_videos(self) -> int:
    return self._num_videos

  @property
  def size(self) -> int:
    return self._size

  @property
  def kind(self) -> str:
    return self._kind

  def num_frames(self, video: int) -> int:
    self._check(video)
    return self._frames

  @property
  def skeleton(self) -> Sequence[Tuple[int, int]]:
    return _SKELETONS[self._kind]

  @property
  def joint_names(self) -> Sequence[str]:
    return _JOINTS[self._kind]

  def video_name(self, video: int) -> str:
    return f'synthetic-{self._kind}-{self._split}-seed{self._seed}-{video:05d}'

  def labels(self, video: int, index: int) -> base.FrameLabels:
    """Exact joints: keypoints float32 [G, 2] in pixels, all visible."""
    self._check(video, index)
    _, keypoints, _, _ = self._video(video)
    return base.FrameLabels(keypoints=keypoints[index].copy(),
                            visible=np.ones(len(self.joint_names), bool))

  def background(self, video: int) -> np.ndarray:
    """The static background of `video` without the figure: uint8 [H, W, 3]."""
    self._check(video)
    return self._video(video)[0].copy()

  def frame(self, video: int, index: int) -> np.ndarray:
    """Frame `index` of `video`: uint8 [size, size, 3]."""
    self._check(video, index)
    background, keypoints, radii, parts = self._video(video)
    canvas = background.astype(np.float32)
    points = keypoints[index].tolist()
    radii = radii[index].tolist()
    for colour, members in parts:
      _paint(canvas, [(points[i], points[j], radii[c]) for c, i, j in members], colour)
    return (canvas + 0.5).astype(np.uint8)

  # --- internals -----------------------------------------------------------------

  def _check(self, video: int, index: Optional[int] = None):
    if not 0 <= video < self._num_videos:
      raise IndexError(f'{type(self).__name__} ({self._split}): video {video} out of '
                       f'range [0, {self._num_videos}).')
    if index is not None and not 0 <= index < self._frames:
      raise IndexError(f'{self.video_name(video)}: frame {index} out of range '
                       f'[0, {self._frames}).')

  def _rng(self, video: int, stream: int) -> np.random.Generator:
    return np.random.default_rng(
        (self._seed, KINDS.index(self._kind), SPLITS.index(self._split), video, stream))

  def _video(self, video: int):
    """(background uint8 [S, S, 3], keypoints float32 [T, G, 2] px,
    radii float32 [T, C] px, parts) of a video, cached; parts lists in drawing order
    (colour, [(capsule index, joint i, joint j)]) per body part."""
    entry = self._cache.get(video)
    if entry is not None:
      return entry
    background, luminance = _render_background(self._rng(video, 0), self._size)
    make = _humanoid if self._kind == 'humanoid' else _quadruped
    figure, scale, capsules = make(self._rng(video, 1), self._frames,
                                   1.0 - luminance)
    keypoints, radii = _fit_to_frame(figure, scale, capsules, self._size)
    parts = []
    for c, capsule in enumerate(capsules):
      if c == 0 or capsule.part != capsules[c - 1].part:
        parts.append((capsule.colour, []))
      parts[-1][1].append((c, capsule.i, capsule.j))
    entry = (background, keypoints, radii, parts)
    with self._lock:
      while len(self._cache) >= self._cache_entries:
        self._cache.pop(next(iter(self._cache)))
      self._cache[video] = entry
    return entry


def from_config(data_config, split: str) -> SyntheticVideos:
  """The synthetic source of `split` ('train' | 'test') from config.data.synthetic.*."""
  if split not in SPLITS:
    raise ValueError(f'synthetic.from_config: split = {split!r}; use one of {SPLITS}.')
  synthetic = data_config.synthetic
  return SyntheticVideos(
      kind=synthetic.kind,
      num_videos=synthetic.get(f'num_{split}_videos'),
      frames_per_video=synthetic.frames_per_video,
      size=synthetic.render_size,
      seed=synthetic.seed,
      split=split)


# --- rendering --------------------------------------------------------------------


def _paint(canvas: np.ndarray, capsules: Sequence[Tuple[Sequence[float],
                                                       Sequence[float], float]],
           colour: np.ndarray):
  """Paints the union of capsules {p : dist(p, segment ab) <= radius} in one colour
  onto `canvas` in place.

  canvas: float32 [H, W, 3]; capsules: (a, b, radius) with a, b (x, y) in pixels
  (centre of pixel (r, c) at (c, r)) and radius in pixels; colour float32 [3].
  Coverage is antialiased linearly over one pixel, clip(radius + 0.5 - distance,
  0, 1), and the union takes the maximum coverage. Only bounding boxes are touched
  (a full-frame distance map per limb would cost ~10x more), and the distance is
  taken in each segment's own frame to keep the number of numpy calls, which
  dominate the cost at these crop sizes, small.
  """
  height, width = canvas.shape[:2]
  boxes = []
  for (ax, ay), (bx, by), radius in capsules:
    reach = radius + 1.0
    boxes.append((max(math.floor(min(ax, bx) - reach), 0),
                  min(math.ceil(max(ax, bx) + reach) + 1, width),
                  max(math.floor(min(ay, by) - reach), 0),
                  min(math.ceil(max(ay, by) + reach) + 1, height)))
  gx0, gx1 = min(b[0] for b in boxes), max(b[1] for b in boxes)
  gy0, gy1 = min(b[2] for b in boxes), max(b[3] for b in boxes)
  if gx0 >= gx1 or gy0 >= gy1:
    return
  union = np.zeros((gy1 - gy0, gx1 - gx0), np.float32)
  for ((ax, ay), (bx, by), radius), (x0, x1, y0, y1) in zip(capsules, boxes):
    if x0 >= x1 or y0 >= y1:
      continue
    dx, dy = bx - ax, by - ay
    length = math.hypot(dx, dy)
    ux, uy = (dx / length, dy / length) if length > 1e-6 else (1.0, 0.0)
    half = 0.5 * length
    px = np.arange(x0, x1, dtype=np.float32) - np.float32(ax)
    py = np.arange(y0, y1, dtype=np.float32) - np.float32(ay)
    # along: offset from the segment's midpoint along it; across: normal offset.
    along = np.add.outer(py * np.float32(uy), px * np.float32(ux) - np.float32(half))
    across = np.add.outer(py * np.float32(ux), px * np.float32(-uy))
    np.abs(along, out=along)
    along -= np.float32(half)
    np.maximum(along, 0.0, out=along)
    along *= along
    across *= across
    along += across
    coverage = np.sqrt(along, out=along)
    np.subtract(np.float32(radius + 0.5), coverage, out=coverage)
    window = union[y0 - gy0:y1 - gy0, x0 - gx0:x1 - gx0]
    np.maximum(window, coverage, out=window)
  np.minimum(union, 1.0, out=union)
  crop = canvas[gy0:gy1, gx0:gx1]
  crop += union[..., None] * (colour - crop)


def _render_background(rng: np.random.Generator, size: int) -> Tuple[np.ndarray, float]:
  """A static texture uint8 [size, size, 3] and its base luminance in [0, 1].

  Base grey (dark or light, so the figure can take the opposite luminance) with a
  small tint, plus bounded texture: smooth noise, and randomly stripes and blobs.
  Every pixel stays within 0.2 of the base luminance per channel.
  """
  luminance = rng.uniform(0.15, 0.35) if rng.uniform() < 0.5 else rng.uniform(0.65, 0.85)
  base_colour = luminance + rng.uniform(-0.06, 0.06, size=3)
  # Smooth noise: a coarse random grid upsampled with periodic cubic splines. The
  # upsampling is linear and separable, so it is applied as one [size, cells]
  # matrix per axis (the zoom of an identity), ~50x faster than zooming the image.
  cells = int(rng.integers(3, 9))
  grid = rng.normal(size=(cells, cells, 3))
  upsample = ndimage.zoom(np.eye(cells), (size / cells, 1), order=3,
                          mode='grid-wrap', grid_mode=True)
  texture = rng.uniform(0.02, 0.06) * np.einsum('yi,ijc,xj->yxc', upsample, grid,
                                                upsample, optimize=True)
  coords = np.arange(size) / size
  if rng.uniform() < 0.5:  # stripes of random orientation and period
    angle = rng.uniform(0, np.pi)
    period = rng.uniform(0.05, 0.25)
    wave = np.sin(2 * np.pi * (np.cos(angle) * coords[None, :] +
                               np.sin(angle) * coords[:, None]) / period
                  + rng.uniform(0, 2 * np.pi))
    texture += rng.uniform(0.03, 0.07) * wave[..., None] * rng.choice([-1, 1], size=3)
  blobs = int(rng.integers(0, 5))  # soft Gaussian blobs, separable in x and y
  if blobs:
    centres = rng.uniform(0, 1, size=(blobs, 2, 1))
    widths = rng.uniform(0.05, 0.2, size=(blobs, 1, 1))
    profiles = np.exp(-(coords - centres)**2 / (2 * widths**2))    # [B, 2 (x, y), S]
    texture += np.einsum('by,bx,bc->yxc', profiles[:, 1], profiles[:, 0],
                         rng.uniform(-0.1, 0.1, size=(blobs, 3)), optimize=True)
  image = base_colour + np.clip(texture, -0.14, 0.14)
  return np.clip(np.rint(image * 255), 0, 255).astype(np.uint8), luminance


def _fit_to_frame(figure: np.ndarray, scale: np.ndarray, capsules: List[_Capsule],
                  size: int) -> Tuple[np.ndarray, np.ndarray]:
  """Places a figure trajectory in the frame.

  figure: [T, G, 2] joints in figure units (already translated and scaled per frame);
  scale: [T] per-frame scale, which also scales the limb radii. One similarity
  transform for the whole video maps the union of the capsules over all frames to
  the frame minus a margin, so the figure never leaves the frame.
  Returns keypoints float32 [T, G, 2] in pixels and radii float32 [T, C] in pixels.
  """
  radii = np.array([c.radius for c in capsules])[None, :] * scale[:, None]   # [T, C]
  ends = np.concatenate([figure[:, [c.i for c in capsules]],
                         figure[:, [c.j for c in capsules]]], axis=1)        # [T, 2C, 2]
  reach = np.concatenate([radii, radii], axis=1)[..., None]
  low = (ends - reach).min(axis=(0, 1))
  high = (ends + reach).max(axis=(0, 1))
  fit = (1 - 2 * _MARGIN) * size / (high - low).max()
  keypoints = (figure - (low + high) / 2) * fit + (size - 1) / 2
  radii_px = np.maximum(radii * fit, _MIN_RADIUS_PX)
  return keypoints.astype(np.float32), radii_px.astype(np.float32)


def _global_motion(rng: np.random.Generator, t: np.ndarray,
                   figure: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
  """Applies a slow scale oscillation (up to +-10%) and translation (up to 0.2
  figure units sideways, 0.08 vertically; figures are about 1 unit across) to
  figure [T, G, 2]; returns (moved figure, scale [T])."""
  scale = _oscillation(rng, t, centre=1.0, amplitude=rng.uniform(0.03, 0.1))
  shift = np.stack([
      _oscillation(rng, t, centre=0.0, amplitude=rng.uniform(0.05, 0.2)),
      _oscillation(rng, t, centre=0.0, amplitude=rng.uniform(0.02, 0.08)),
  ], axis=-1)
  return figure * scale[:, None, None] + shift[:, None, :], scale


def _humanoid(rng: np.random.Generator, frames: int,
              figure_luminance: float) -> Tuple[np.ndarray, np.ndarray, List[_Capsule]]:
  """Front-view humanoid, about 1 unit tall: joints [T, 15, 2], scale [T], capsules.

  The figure's right side is on the image left. Arms swing sideways (up to above
  the head), elbows and knees bend, the torso and head tilt.
  """
  t = np.arange(frames, dtype=np.float64)

  def jitter(value):  # per-video size variation
    return value * rng.uniform(0.8, 1.2)

  torso, neck_len = jitter(0.30), jitter(0.11)
  shoulder_half, hip_half = jitter(0.11), jitter(0.07)
  upper_arm, forearm = jitter(0.15), jitter(0.14)
  thigh, shin = jitter(0.22), jitter(0.21)

  lean = _oscillation(rng, t, centre=rng.uniform(-0.08, 0.08),
                      amplitude=rng.uniform(0.05, 0.2))
  tilt = _oscillation(rng, t, centre=0.0, amplitude=rng.uniform(0.1, 0.35))
  up = _direction(np.pi + lean)                       # pelvis -> neck
  lateral = np.stack([-up[:, 1], up[:, 0]], axis=-1)  # towards image right
  pelvis = np.zeros((frames, 2))
  neck = pelvis + torso * up
  head = neck + neck_len * _direction(np.pi + lean + tilt)
  joints = [head, neck, pelvis]
  for side in (-1.0, 1.0):  # right (image left), then left
    shoulder = neck + side * shoulder_half * lateral
    raise_ = _oscillation(rng, t, centre=rng.uniform(0.6, 1.6),
                          amplitude=rng.uniform(0.4, 0.9))
    bend = _oscillation(rng, t, centre=rng.uniform(0.0, 0.9),
                        amplitude=rng.uniform(0.2, 0.6))
    upper = lean + side * raise_
    elbow = shoulder + upper_arm * _direction(upper)
    wrist = elbow + forearm * _direction(upper + side * bend)
    joints += [shoulder, elbow, wrist]
  for side in (-1.0, 1.0):
    hip = pelvis + side * hip_half * lateral
    spread = _oscillation(rng, t, centre=rng.uniform(0.0, 0.3),
                          amplitude=rng.uniform(0.1, 0.35))
    knee_bend = _oscillation(rng, t, centre=rng.uniform(0.1, 0.4),
                             amplitude=rng.uniform(0.05, 0.35))
    upper = side * spread
    knee = hip + thigh * _direction(upper)
    ankle = knee + shin * _direction(upper - side * knee_bend)
    joints += [hip, knee, ankle]
  figure, scale = _global_motion(rng, t, np.stack(joints, axis=1))

  colours = {part: _contrasting_colour(rng, figure_luminance) * 255
             for part in ('torso', 'head', 'right', 'left')}
  limb, torso_r = jitter(0.03), jitter(0.065)
  head_r = jitter(0.07)

  def capsule(i, j, radius, part, colour=None):
    return _Capsule(i, j, radius, part, colours[colour or part].astype(np.float32))

  capsules = [
      capsule(9, 10, limb * 1.2, 'right_leg', 'right'),
      capsule(10, 11, limb * 1.1, 'right_leg', 'right'),
      capsule(12, 13, limb * 1.2, 'left_leg', 'left'),
      capsule(13, 14, limb * 1.1, 'left_leg', 'left'),
      capsule(1, 2, torso_r, 'torso'),
      capsule(2, 9, limb * 1.3, 'torso'), capsule(2, 12, limb * 1.3, 'torso'),
      capsule(1, 3, limb * 1.1, 'torso'), capsule(1, 6, limb * 1.1, 'torso'),
      capsule(0, 1, limb, 'head'), capsule(0, 0, head_r, 'head'),
      capsule(3, 4, limb, 'right'), capsule(4, 5, limb * 0.9, 'right'),
      capsule(6, 7, limb, 'left'), capsule(7, 8, limb * 0.9, 'left'),
  ]
  return figure, scale, capsules


def _quadruped(rng: np.random.Generator, frames: int,
               figure_luminance: float) -> Tuple[np.ndarray, np.ndarray, List[_Capsule]]:
  """Side-view quadruped, body about 0.5 units long: joints [T, 18, 2], scale [T],
  capsules. It faces right or left at random; legs trot (diagonal pairs in phase),
  the neck, head and tail swing, the body pitches slightly."""
  t = np.arange(frames, dtype=np.float64)

  def jitter(value):  # per-video size variation
    return value * rng.uniform(0.8, 1.2)

  body, neck_len, head_len = jitter(0.5), jitter(0.2), jitter(0.12)
  tail1, tail2 = jitter(0.13), jitter(0.12)
  leg_lengths = (jitter(0.17), jitter(0.15), jitter(0.09))

  pitch = _oscillation(rng, t, centre=rng.uniform(-0.05, 0.05),
                       amplitude=rng.uniform(0.02, 0.1))
  forward = _direction(np.pi / 2 + pitch)
  centre = np.zeros((frames, 2))
  withers = centre + body / 2 * forward
  croup = centre - body / 2 * forward
  neck_angle = np.pi / 2 + pitch + _oscillation(
      rng, t, centre=rng.uniform(0.5, 1.0), amplitude=rng.uniform(0.1, 0.4))
  neck = withers + neck_len * _direction(neck_angle)
  head = neck + head_len * _direction(neck_angle - _oscillation(
      rng, t, centre=rng.uniform(0.9, 1.4), amplitude=rng.uniform(0.1, 0.4)))
  tail_angle = -np.pi / 2 + pitch - _oscillation(
      rng, t, centre=rng.uniform(-0.3, 0.7), amplitude=rng.uniform(0.1, 0.5))
  tail_mid = croup + tail1 * _direction(tail_angle)
  tail_tip = tail_mid + tail2 * _direction(tail_angle - _oscillation(
      rng, t, centre=0.0, amplitude=rng.uniform(0.2, 0.6)))
  joints = [head, neck, withers, croup, tail_mid, tail_tip]

  gait = rng.uniform(1 / 40, 1 / 20)
  gait_phase = rng.uniform(0, 2 * np.pi)
  stride = rng.uniform(0.2, 0.5)
  # Trot: front-left with hind-right, front-right with hind-left.
  for root, front, offset in ((withers, True, 0.0), (withers, True, np.pi),
                              (croup, False, np.pi), (croup, False, 0.0)):
    phase = gait_phase + offset + rng.normal(0, 0.2)
    swing = pitch + _oscillation(rng, t, centre=0.0, amplitude=stride,
                                 phase=phase, frequency=gait)
    # Front knees fold backwards (-), hind hocks forwards (+): x grows forwards.
    sign = -1.0 if front else 1.0
    bend = sign * _oscillation(rng, t, centre=0.35, amplitude=0.3,
                               phase=phase + np.pi / 2, frequency=gait)
    upper = root + leg_lengths[0] * _direction(swing)
    lower = upper + leg_lengths[1] * _direction(swing + bend)
    paw = lower + leg_lengths[2] * _direction(swing + 0.5 * bend)
    joints += [upper, lower, paw]
  figure = np.stack(joints, axis=1)
  faces_right = rng.uniform() < 0.5
  if not faces_right:
    figure[..., 0] *= -1
  figure, scale = _global_motion(rng, t, figure)

  colours = {part: _contrasting_colour(rng, figure_luminance) * 255
             for part in ('torso', 'head', 'tail', 'near', 'far')}
  leg_r, body_r = jitter(0.028), jitter(0.075)

  def capsule(i, j, radius, part, colour=None):
    return _Capsule(i, j, radius, part, colours[colour or part].astype(np.float32))


  def legs(first, colour):  # root (withers or croup) -> upper -> lower -> paw
    root = 2 if first < 12 else 3
    return [capsule(root, first, leg_r * 1.2, f'leg{first}', colour),
            capsule(first, first + 1, leg_r, f'leg{first}', colour),
            capsule(first + 1, first + 2, leg_r * 0.85, f'leg{first}', colour)]

  # The animal's right side faces the camera when it faces right.
  near_front, far_front = (9, 6) if faces_right else (6, 9)
  near_hind, far_hind = (15, 12) if faces_right else (12, 15)
  capsules = (legs(far_front, 'far') + legs(far_hind, 'far') + [
      capsule(3, 4, leg_r, 'tail'), capsule(4, 5, leg_r * 0.8, 'tail'),
      capsule(2, 3, body_r, 'torso'),
      capsule(1, 2, leg_r * 1.6, 'head'), capsule(0, 1, leg_r * 1.3, 'head'),
      capsule(0, 0, jitter(0.045), 'head'),
  ] + legs(near_front, 'near') + legs(near_hind, 'near'))
  return figure, scale, capsules
