"""The mean-pose baseline: the training split's mean ground-truth pose on every frame."""

import numpy as np

from ppl_jax.data import base


def mean_training_pose(source: base.VideoSource, *, frames_per_video: int = 16
                       ) -> np.ndarray:
  """Mean ground-truth pose [G, 2] in [-1, 1] over (up to) evenly spaced frames.

  Missing joints are left out of their joint's mean.
  """
  total, count = None, None
  for video in range(source.num_videos):
    n = source.num_frames(video)
    size = None   # (height, width), decoded only for videos that have labels
    for t in np.unique(np.linspace(0, n - 1, min(n, frames_per_video)).astype(int)):
      labels = source.labels(video, int(t))
      if labels is None:
        continue
      if size is None:
        size = source.frame(video, 0).shape[:2]
      height, width = size
      xy = base.pixels_to_normalized(labels.keypoints, width, height).astype(np.float64)
      vis = np.asarray(labels.visible, bool)
      if total is None:
        total, count = np.zeros_like(xy), np.zeros(len(xy))
      total += np.where(vis[:, None], xy, 0.0)
      count += vis
  if total is None:
    raise ValueError('The training split has no labels: no mean-pose baseline.')
  return (total / np.maximum(count, 1)[:, None]).astype(np.float32)
