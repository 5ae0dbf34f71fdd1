"""Static-background estimates and foreground masks (PPL's videos have static backgrounds).

The background of a video is the per-pixel temporal median of evenly spaced frames
(`frame_indices`), resized to the training resolution: a pixel the figure covers in fewer than
half of those frames gets its background colour. The foreground of a frame is where any
channel differs from that background by more than a threshold (in [0, 1] intensity units).
Both use no labels; `objective.foreground_loss` uses the mask to pull keypoints onto the
moving figure early in training.
"""

import numpy as np


def estimate_background(frames) -> np.ndarray:
  """Per-pixel median of uint8 frames [T, H, W, 3] -> uint8 [H, W, 3]."""
  frames = np.asarray(frames)
  if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8 or not len(frames):
    raise ValueError(f'estimate_background needs uint8 frames [T, H, W, 3], T >= 1; got '
                     f'{frames.dtype} {frames.shape}.')
  # Lower median (an element of the data) so the result is an exact uint8 value.
  return np.sort(frames, axis=0)[(len(frames) - 1) // 2]


def frame_indices(num_frames: int, max_frames: int) -> np.ndarray:
  """Up to `max_frames` evenly spaced, distinct frame indices of a `num_frames` video."""
  return np.unique(np.linspace(0, num_frames - 1, min(num_frames, max_frames)).astype(int))


def foreground_mask(image: np.ndarray, background: np.ndarray, threshold: float) -> np.ndarray:
  """uint8 [H, W] (1 = foreground): max over channels of |image - background| / 255 > threshold."""
  if image.shape != background.shape:
    raise ValueError(f'foreground_mask: image {image.shape} and background '
                     f'{background.shape} differ in shape.')
  diff = np.abs(image.astype(np.int16) - background.astype(np.int16)).max(axis=-1)
  return (diff > threshold * 255.0).astype(np.uint8)
