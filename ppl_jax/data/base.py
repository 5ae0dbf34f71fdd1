"""The interface every video source implements: random access to frames and labels.

A source is a collection of videos with a static background; a training pair is two
frames of one video. Sources must be picklable (grain spawns worker processes), so
they open files lazily and keep only paths and small metadata as state.
"""

import abc
import dataclasses
from typing import Optional, Sequence, Tuple

import numpy as np


@dataclasses.dataclass(frozen=True)
class FrameLabels:
  """Ground-truth joints of one frame.

  keypoints: float32 [G, 2], (x, y) in pixels of the frame as `frame()` returns it,
    pixel centres at integer coordinates.
  visible: bool [G]; False where the joint is missing (its keypoint value is 0).
  """
  keypoints: np.ndarray
  visible: np.ndarray


class VideoSource(abc.ABC):
  """Random access to the frames (and optional labels) of a set of videos."""

  @property
  @abc.abstractmethod
  def num_videos(self) -> int:
    """Number of videos."""

  @abc.abstractmethod
  def num_frames(self, video: int) -> int:
    """Number of frames of video `video`."""

  @abc.abstractmethod
  def frame(self, video: int, index: int) -> np.ndarray:
    """Frame `index` of video `video`: uint8 [H, W, 3]."""

  def labels(self, video: int, index: int) -> Optional[FrameLabels]:
    """Ground truth of a frame, or None where the source has none."""
    del video, index
    return None

  def video_name(self, video: int) -> str:
    """A human-readable name of the video (a path or an id), used in messages."""
    return str(video)

  @property
  def skeleton(self) -> Optional[Sequence[Tuple[int, int]]]:
    """Ground-truth edges between joints (pairs of joint indices), if known."""
    return None

  @property
  def joint_names(self) -> Optional[Sequence[str]]:
    """Names of the G ground-truth joints, if known."""
    return None


def pixels_to_normalized(xy: np.ndarray, width: int, height: int) -> np.ndarray:
  """(x, y) pixels (centres at integers) -> (x, y) in [-1, 1] (half-pixel grid)."""
  scale = np.array([width, height], dtype=np.float64)
  return ((2.0 * np.asarray(xy, np.float64) + 1.0) / scale - 1.0).astype(np.float32)


def normalized_to_pixels(xy: np.ndarray, width: int, height: int) -> np.ndarray:
  """Inverse of `pixels_to_normalized`."""
  scale = np.array([width, height], dtype=np.float64)
  return (((np.asarray(xy, np.float64) + 1.0) * scale - 1.0) / 2.0).astype(np.float32)
