"""Min-cost-flow matching against brute force and a hand-computed case."""

import itertools
import math

import numpy as np
import pytest

from ppl_jax.evaluation import matching


def _brute_force(predicted, ground_truth, visible):
  """Smallest mean L2 over all maps joint -> keypoint with <= ceil(G/N) per keypoint."""
  num_frames, num_detected, _ = predicted.shape
  num_joints = ground_truth.shape[1]
  capacity = math.ceil(num_joints / num_detected)
  best = np.inf
  for assignment in itertools.product(range(num_detected), repeat=num_joints):
    if max(np.bincount(assignment, minlength=num_detected)) > capacity:
      continue
    total, count = 0.0, 0
    for f in range(num_frames):
      for g in range(num_joints):
        if visible[f, g]:
          total += math.dist(predicted[f, assignment[g]], ground_truth[f, g])
          count += 1
    best = min(best, total / count)
  return best


@pytest.mark.parametrize('num_detected,num_joints', [(3, 3), (2, 3), (4, 2), (3, 5),
                                                     (2, 5), (5, 4)])
def test_matches_brute_force(num_detected, num_joints):
  rng = np.random.default_rng(num_detected * 10 + num_joints)
  for _ in range(3):
    predicted = rng.uniform(-1, 1, (4, num_detected, 2))
    ground_truth = rng.uniform(-1, 1, (4, num_joints, 2))
    visible = rng.random((4, num_joints)) > 0.25
    visible[0, 0] = True
    result = matching.matched_error(predicted, ground_truth, visible)
    np.testing.assert_allclose(result.error, _brute_force(predicted, ground_truth, visible),
                               rtol=1e-12)
    capacity = math.ceil(num_joints / num_detected)
    assert np.bincount(result.assignment, minlength=num_detected).max() <= capacity


def test_hand_computed():
  # One frame, 2 detected keypoints, 3 joints; capacity ceil(3/2) = 2.
  predicted = np.array([[[0.0, 0.0], [1.0, 0.0]]])
  ground_truth = np.array([[[0.0, 0.1], [0.1, 0.0], [1.0, 0.3]]])
  # Joints 0 and 1 go to keypoint 0 (0.1 each), joint 2 to keypoint 1 (0.3).
  result = matching.matched_error(predicted, ground_truth, np.ones((1, 3), bool))
  np.testing.assert_array_equal(result.assignment, [0, 0, 1])
  np.testing.assert_allclose(result.error, (0.1 + 0.1 + 0.3) / 3)
  np.testing.assert_allclose(result.per_joint, [0.1, 0.1, 0.3])


def test_missing_labels_excluded():
  predicted = np.array([[[0.0, 0.0]], [[0.0, 0.0]]])
  ground_truth = np.array([[[3.0, 4.0]], [[100.0, 0.0]]])
  visible = np.array([[True], [False]])
  result = matching.matched_error(predicted, ground_truth, visible)
  np.testing.assert_allclose(result.error, 5.0)
  assert result.num_labels == 1


def test_capacity_forces_second_keypoint():
  # Both joints are nearest keypoint 0, but with G = N = 2 each keypoint serves one joint.
  predicted = np.array([[[0.0, 0.0], [10.0, 0.0]]])
  ground_truth = np.array([[[0.0, 1.0], [0.0, 2.0]]])
  result = matching.matched_error(predicted, ground_truth, np.ones((1, 2), bool))
  # Options: (0,1): 1 + dist((10,0),(0,2)) ; (1,0): dist((10,0),(0,1)) + 2.
  options = [1 + math.hypot(10, 2), math.hypot(10, 1) + 2]
  np.testing.assert_allclose(result.error, min(options) / 2)


def test_bad_shapes():
  with pytest.raises(ValueError, match='predicted'):
    matching.matched_error(np.zeros((2, 3)), np.zeros((2, 3, 2)), np.ones((2, 3), bool))
