"""A background-subtraction tracker: the baseline `predict --labels` reports beside the keypoints.

Per image: the foreground against its folder's median background (`data.background`), its
largest 8-connected blob (scipy.ndimage.label), and three points in pixels: the blob's
centroid and the two ends of its major axis (centroid +- 2 standard deviations, sample
covariance, of the pixel coordinates along the first principal axis; the end with the smaller
x first, then smaller y). Fitted to a user's labels with the same regression as the keypoints,
it shows what location and orientation alone explain: keypoints that beat it carry pose
beyond where the animal is.
"""

import collections
import os
from typing import Callable, Sequence

import numpy as np
from scipy import ndimage

from ppl_jax.data import background

AXIS_STDS = 2.0


def blob_points(image: np.ndarray, background_image: np.ndarray, threshold: float
                ) -> np.ndarray:
  """float64 [3, 2] (x, y) pixels: centroid, major-axis ends of the largest foreground blob.

  An image without foreground gives the image centre three times.
  """
  mask = background.foreground_mask(image, background_image, threshold)
  labels, count = ndimage.label(mask, structure=np.ones((3, 3)))
  h, w = mask.shape
  if not count:
    return np.tile([(w - 1) / 2, (h - 1) / 2], (3, 1)).astype(np.float64)
  sizes = np.bincount(labels.ravel())[1:]
  rows, cols = np.nonzero(labels == 1 + int(np.argmax(sizes)))
  xy = np.stack([cols, rows], axis=1).astype(np.float64)
  centre = xy.mean(axis=0)
  if len(xy) < 2:
    return np.tile(centre, (3, 1))
  eigenvalues, eigenvectors = np.linalg.eigh(np.cov(xy.T))
  half = AXIS_STDS * np.sqrt(max(eigenvalues[-1], 0.0)) * eigenvectors[:, -1]
  ends = sorted([centre - half, centre + half], key=lambda p: (p[0], p[1]))
  return np.stack([centre, *ends])


def track(frame: Callable[[int], np.ndarray], names: Sequence[str], threshold: float, *,
          background_frames: int = 32) -> np.ndarray:
  """float64 [R, 3, 2]: `blob_points` of the R images `frame(i)` (uint8 [H, W, 3]), each
  against the median of up to `background_frames` evenly spaced images of its folder (the
  directory part of its name in `names`)."""
  groups = collections.defaultdict(list)
  for i, name in enumerate(names):
    groups[os.path.dirname(name)].append(i)
  out = np.zeros((len(names), 3, 2))
  for members in groups.values():
    picked = [members[j] for j in background.frame_indices(len(members), background_frames)]
    median = background.estimate_background(np.stack([frame(i) for i in picked]))
    for i in members:
      out[i] = blob_points(frame(i), median, threshold)
  return out
