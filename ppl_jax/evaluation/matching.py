"""Min-cost-flow matching of detected keypoints to ground-truth joints (SPEC 4).

The paper's "*" protocol: one assignment for the whole evaluated set maps every
ground-truth joint g to a detected keypoint a(g), each detected keypoint serving
at most K = ceil(G / N) joints, chosen to minimise the mean true L2 distance over
all labelled (frame, joint) pairs; missing labels take no part. The flow problem
with capacities K is solved exactly as an assignment problem: each detected
keypoint's cost column is repeated K times (N * K >= G columns) and
`scipy.optimize.linear_sum_assignment` picks one column per joint.
"""

import dataclasses
import math

import numpy as np
from scipy import optimize


@dataclasses.dataclass(frozen=True)
class MatchResult:
  """error: mean L2 over labelled (frame, joint) pairs, in input units.

  assignment: int [G], detected keypoint serving each joint.
  per_joint: float [G], mean L2 of each joint (NaN if never labelled).
  num_labels: number of labelled (frame, joint) pairs.
  """
  error: float
  assignment: np.ndarray
  per_joint: np.ndarray
  num_labels: int


def matched_error(predicted: np.ndarray, ground_truth: np.ndarray,
                  visible: np.ndarray) -> MatchResult:
  """Matches N detected keypoints to G joints over F frames.

  predicted: [F, N, 2]; ground_truth: [F, G, 2] (same units); visible: bool [F, G].
  """
  predicted = np.asarray(predicted, np.float64)
  ground_truth = np.asarray(ground_truth, np.float64)
  visible = np.asarray(visible, bool)
  if predicted.ndim != 3 or ground_truth.ndim != 3 or predicted.shape[-1] != 2 \
      or ground_truth.shape[-1] != 2 or predicted.shape[0] != ground_truth.shape[0] \
      or visible.shape != ground_truth.shape[:2]:
    raise ValueError(
        f'matched_error needs predicted [F, N, 2], ground_truth [F, G, 2], visible '
        f'[F, G]; got {predicted.shape}, {ground_truth.shape}, {visible.shape}.')
  num_labels = int(visible.sum())
  if num_labels == 0:
    raise ValueError('matched_error: no labelled joint in the evaluated set.')
  num_detected, num_joints = predicted.shape[1], ground_truth.shape[1]
  # distance[f, n, g] = || predicted[f, n] - ground_truth[f, g] ||.
  distance = np.linalg.norm(predicted[:, :, None] - ground_truth[:, None], axis=-1)
  # total[n, g]: summed distance over frames where g is labelled. Minimising the
  # sum over the assignment minimises the mean over all labelled pairs.
  total = np.einsum('fng,fg->ng', distance, visible.astype(np.float64))
  capacity = math.ceil(num_joints / num_detected)
  cost = np.repeat(total.T, capacity, axis=1)          # [G, N * K]
  rows, cols = optimize.linear_sum_assignment(cost)
  assignment = np.empty(num_joints, np.int64)
  assignment[rows] = cols // capacity
  counts = visible.sum(axis=0)
  chosen = total[assignment, np.arange(num_joints)]
  with np.errstate(invalid='ignore', divide='ignore'):
    per_joint = np.where(counts > 0, chosen / np.maximum(counts, 1), np.nan)
  return MatchResult(error=float(chosen.sum() / num_labels), assignment=assignment,
                     per_joint=per_joint, num_labels=num_labels)
