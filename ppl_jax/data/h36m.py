"""Simplified Human3.6M (Zhang et al. 2018; used by AutoLink, BKinD, PPL).

Layout under `root`:
  S{n}/WithBackground/<sequence>/<frame>.jpg   frames
  S{n}/Landmarks/<sequence>/<frame>.mat        key 'keypoints_2d': 32 x 2 in [0, 1], (row, col)
Splits: train = S1, S5, S6, S7, S8, S9; test = S11. Only the six activities
directions, discussion, posing, waiting, greeting, walking are used: a sequence
folder belongs to an activity when its name starts with the activity's name,
compared case-insensitively ('Directions 1', 'directions.54138969', ...), as in
AutoLink's datasets/h36m.py (`startswith`) and keypointgan's
simplehuman36m_dataset.py (`lower().startswith`); like theirs, this prefix rule
also admits e.g. 'WalkingDog' sequences if a copy of the data has them. A
sequence folder is one video; frames are ordered by the number in their name.

Labels: (row, col) in [0, 1] spans the whole image, so pixel
(x, y) = (col * W - 0.5, row * H - 0.5) with pixel centres at integers (and
normalised = 2 * u - 1 exactly). Horizontal flipping is done by the input
pipeline; `flip_pairs` gives the joints it swaps.
"""

import os
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import scipy.io

from ppl_jax.data import base
from ppl_jax.data import video
from ppl_jax.data.errors import DataError, check_on_bad, handle_bad, log_skipped

PathLike = Union[str, os.PathLike]

H36M_SUBJECTS = {'train': (1, 5, 6, 7, 8, 9), 'test': (11,)}
H36M_ACTIVITIES = ('directions', 'discussion', 'posing', 'waiting', 'greeting', 'walking')

# The 32-joint Human3.6M order of the simplified dataset, with the names of
# tomasjakab/keypointgan data/human36m_skeleton.py (`joint_indices`; its
# 'l_uknown'/'r_uknown' spelled out). 0 'hip' and 11 'pelvis' nearly coincide.
H36M_JOINT_NAMES = (
    'hip', 'r_hip', 'r_knee', 'r_ankle', 'r_ball', 'r_toes',
    'l_hip', 'l_knee', 'l_ankle', 'l_ball', 'l_toes',
    'pelvis', 'thorax', 'neck', 'head_center', 'head_back',
    'l_unknown', 'l_shoulder', 'l_elbow', 'l_wrist', 'l_wrist_2', 'l_thumb',
    'l_little', 'l_little_2',
    'r_unknown', 'r_shoulder', 'r_elbow', 'r_wrist', 'r_wrist_2', 'r_thumb',
    'r_little', 'r_little_2')

# keypointgan's `links` skeleton (its commented-out links left out).
H36M_SKELETON = (
    (1, 12), (2, 1), (3, 2), (4, 3), (5, 4), (6, 12), (7, 6), (8, 7), (9, 8), (10, 9),
    (13, 12), (15, 13), (14, 15), (17, 13), (18, 17), (19, 18), (21, 19), (22, 19),
    (25, 13), (26, 25), (27, 26), (29, 27), (30, 27))

# Every right/left joint pair of the order above (keypointgan's
# get_lr_correspondences, which pairs each 'l_*' with its 'r_*').
H36M_FLIP_PAIRS = ((1, 6), (2, 7), (3, 8), (4, 9), (5, 10), (24, 16), (25, 17),
                   (26, 18), (27, 19), (28, 20), (29, 21), (30, 22), (31, 23))

# The pairs AutoLink's evaluation swaps (xingzhehe/AutoLink-..., datasets/h36m.py,
# `correspondences`), verbatim for reproducing its numbers: it lacks (16, 24) and
# has (21, 28) where (21, 29) is meant, so its `swap_points` maps 20 and 21 both
# to 28 and leaves 29 in place.
AUTOLINK_SWAP_PAIRS = ((1, 6), (2, 7), (3, 8), (4, 9), (5, 10), (17, 25), (18, 26),
                       (19, 27), (20, 28), (21, 28), (22, 30), (23, 31))

_LAYOUT_HINT = ('expected the simplified Human3.6M layout (Zhang et al. 2018): '
                'S{n}/WithBackground/<sequence>/<frame>.jpg and '
                'S{n}/Landmarks/<sequence>/<frame>.mat')


class Human36MSource(base.VideoSource):
  """Simplified Human3.6M; every frame is labelled with 32 joints.

  split: 'train' | 'test'. subjects: override the split's subject numbers.
  on_bad: 'error' raises on a sequence with missing landmark files; 'warn' skips it.
  """

  def __init__(self, root: PathLike, split: str, *,
               subjects: Optional[Sequence[int]] = None,
               activities: Sequence[str] = H36M_ACTIVITIES, on_bad: str = 'error'):
    check_on_bad(on_bad)
    if split not in H36M_SUBJECTS:
      raise ValueError(f'split must be one of {sorted(H36M_SUBJECTS)}, got {split!r}.')
    root = Path(root)
    self.root = str(root)
    if not root.is_dir():
      raise DataError(f'{root}: Human3.6M root folder not found; {_LAYOUT_HINT}.')
    subjects = H36M_SUBJECTS[split] if subjects is None else tuple(subjects)
    prefixes = tuple(a.lower() for a in activities)
    self._videos: List[Tuple[str, List[str], str]] = []  # (name, frame paths, landmark dir)
    skipped, total = [], 0
    for subject in subjects:
      frames_dir = root / f'S{subject}' / 'WithBackground'
      landmarks_dir = root / f'S{subject}' / 'Landmarks'
      for folder in (frames_dir, landmarks_dir):
        if not folder.is_dir():
          found = sorted(p.name for p in root.iterdir())[:10]
          raise DataError(f'{folder}: folder not found (root has {found}); '
                          f'{_LAYOUT_HINT}; the {split} split needs subjects '
                          f'{subjects}.')
      sequences = sorted((p for p in frames_dir.iterdir()
                          if p.is_dir() and p.name.lower().startswith(prefixes)),
                         key=lambda p: video.natural_key(p.name))
      for sequence in sequences:
        total += 1
        try:
          self._videos.append(self._check_sequence(sequence, landmarks_dir / sequence.name))
        except DataError as e:
          handle_bad(on_bad, e, skipped)
    log_skipped(skipped, total, 'sequences', self.root)
    if not self._videos:
      raise DataError(f'{root}: no usable sequence of the activities {activities} for '
                      f'subjects {subjects}; {_LAYOUT_HINT}.')
    self._sizes: Dict[int, Tuple[int, int]] = {}

  @staticmethod
  def _check_sequence(sequence: Path, landmarks: Path):
    frames = [p for p in video.list_images(sequence) if p.suffix.lower() in ('.jpg', '.jpeg')]
    if not frames:
      raise DataError(f'{sequence}: no .jpg frames in the sequence folder; '
                      f'{_LAYOUT_HINT}.')
    if not landmarks.is_dir():
      raise DataError(f'{landmarks}: landmark folder of {sequence} not found; '
                      f'{_LAYOUT_HINT}.')
    mats = {p.stem for p in landmarks.iterdir() if p.suffix == '.mat'}
    missing = [str(landmarks / f'{p.stem}.mat') for p in frames if p.stem not in mats]
    if missing:
      raise DataError(f'{missing[0]}: landmark file missing ({len(missing)} of '
                      f'{len(frames)} frames of {sequence} lack one); restore them or '
                      'remove those frames.')
    name = f'{sequence.parent.parent.name}/{sequence.name}'
    return name, [str(p) for p in frames], str(landmarks)

  @property
  def num_videos(self) -> int:
    return len(self._videos)

  def num_frames(self, video_index: int) -> int:
    return len(self._videos[video_index][1])

  def frame(self, video_index: int, index: int) -> np.ndarray:
    return video.read_image(self.frame_path(video_index, index))

  def frame_path(self, video_index: int, index: int) -> str:
    """The JPEG file of a frame (the prepare builders copy its bytes as they are)."""
    return str(self._videos[video_index][1][index])

  def labels(self, video_index: int, index: int) -> base.FrameLabels:
    """32 joints, (x, y) pixels of the frame; all visible."""
    _, frames, landmarks = self._videos[video_index]
    mat_path = os.path.join(landmarks, Path(frames[index]).stem + '.mat')
    try:
      points = scipy.io.loadmat(mat_path)['keypoints_2d']
    except KeyError:
      raise DataError(f'{mat_path}: no variable "keypoints_2d" (32 x 2, (row, col) '
                      'in [0, 1]); ' + _LAYOUT_HINT + '.') from None
    except (OSError, ValueError, NotImplementedError) as e:
      raise DataError(f'{mat_path}: cannot be read as a MATLAB file ({e}).') from e
    points = np.asarray(points, np.float64)
    if points.shape != (32, 2):
      raise DataError(f'{mat_path}: keypoints_2d has shape {points.shape}, expected '
                      '(32, 2) (row, col) in [0, 1].')
    if video_index not in self._sizes:
      self._sizes[video_index] = video.image_size(frames[index])
    width, height = self._sizes[video_index]
    # (row, col) in [0, 1] spans the image: 2u - 1 is the normalised coordinate.
    xy = base.normalized_to_pixels(2.0 * points[:, ::-1] - 1.0, width, height)
    visible = np.isfinite(xy).all(axis=-1)
    return base.FrameLabels(keypoints=np.where(visible[:, None], xy, 0).astype(np.float32),
                            visible=visible)

  def video_name(self, video_index: int) -> str:
    return self._videos[video_index][0]

  @property
  def skeleton(self) -> Sequence[Tuple[int, int]]:
    return H36M_SKELETON

  @property
  def joint_names(self) -> Sequence[str]:
    return H36M_JOINT_NAMES

  @property
  def flip_pairs(self) -> Sequence[Tuple[int, int]]:
    """(right, left) joint index pairs that a horizontal flip swaps."""
    return H36M_FLIP_PAIRS
