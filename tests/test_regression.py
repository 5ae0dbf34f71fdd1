"""Regression protocols against normal equations and hand-computed cases."""

import numpy as np
import pytest

from ppl_jax.data import h36m
from ppl_jax.evaluation import regression


def _normal_equations(features, targets):
  return np.linalg.inv(features.T @ features) @ features.T @ targets


def test_fit_regression_matches_normal_equations_with_bias():
  rng = np.random.default_rng(0)
  detected = rng.normal(size=(20, 3, 2))
  ground_truth = rng.normal(size=(20, 2, 2))
  regressor = regression.fit_regression(detected, ground_truth, bias=True)
  features = np.concatenate([detected.reshape(20, 6), np.ones((20, 1))], axis=1)
  expected = _normal_equations(features, ground_truth.reshape(20, 4))
  np.testing.assert_allclose(regressor.coefficients.reshape(7, 4), expected, atol=1e-10)
  np.testing.assert_allclose(regressor.predict(detected).reshape(20, 4),
                             features @ expected, atol=1e-10)


def test_fit_regression_masks_each_coordinate_separately():
  rng = np.random.default_rng(1)
  detected = rng.normal(size=(12, 2, 2))
  ground_truth = rng.normal(size=(12, 2, 2))
  visible = np.ones((12, 2), bool)
  visible[:5, 1] = False
  ground_truth[:5, 1] = -1.0   # what a missing label holds; must not enter the fit
  regressor = regression.fit_regression(detected, ground_truth, visible)
  features = np.concatenate([detected.reshape(12, 4), np.ones((12, 1))], axis=1)
  np.testing.assert_allclose(regressor.coefficients[:, 0],
                             _normal_equations(features, ground_truth[:, 0]), atol=1e-10)
  np.testing.assert_allclose(regressor.coefficients[:, 1],
                             _normal_equations(features[5:], ground_truth[5:, 1]),
                             atol=1e-10)


def test_evaluate_regression_hand_computed():
  # Exact linear relation gt = 2 * kp0 + (1, -1) on the training frames.
  detected = np.array([[[0., 0.]], [[1., 0.]], [[0., 1.]], [[2., 3.]]])
  ground_truth = 2 * detected + np.array([1., -1.])
  regressor = regression.fit_regression(detected, ground_truth)
  test_detected = np.array([[[1., 1.]], [[0., 0.]]])
  # Predictions (3, 1) and (1, -1); labels off by (3, 4) -> L2 5, and by (0, 0).
  test_truth = np.array([[[6., 5.]], [[1., -1.]]])
  result = regression.evaluate_regression(regressor, test_detected, test_truth)
  assert result.protocol == regression.GENERIC_PROTOCOL
  assert result.units.startswith('pixels')
  np.testing.assert_allclose(result.value, 2.5, atol=1e-9)
  np.testing.assert_allclose(result.details['per_coordinate_mae'], [[1.5, 2.0]], atol=1e-9)
  # The second frame unlabelled: only the (3, 4) miss counts.
  result = regression.evaluate_regression(regressor, test_detected, test_truth,
                                          np.array([[True], [False]]))
  np.testing.assert_allclose(result.value, 5.0, atol=1e-9)
  assert result.details['num_labels'] == 1


def test_taichi_score_hand_computed():
  rng = np.random.default_rng(2)
  to_pixels = lambda points: (points + 1) * 128 - 0.5
  to_normalised = lambda pixels: (pixels + 0.5) / 128 - 1

  def joints(detected):
    """Two joints, each an exact affine function of the detections in pixels."""
    pixels = to_pixels(detected)
    return np.stack([pixels[:, 0] * 0.5 + pixels[:, 1] * 0.25 + 10, pixels[:, 1] - 3],
                    axis=1)

  train_detected = rng.uniform(-1, 1, (30, 2, 2))
  train_truth = joints(train_detected)
  train_visible = np.ones((30, 2), bool)
  train_truth[:4, 1] = -1                                # missing labels
  train_visible[:4, 1] = False
  test_detected = rng.uniform(-1, 1, (3, 2, 2))
  test_truth = joints(test_detected)
  test_truth[:, 0, 0] += np.array([1., -2., 3.])         # MAE 2
  test_truth[:, 1, 1] += np.array([4., 0., 0.])          # frame 2 missing below: MAE 2
  test_truth[2, 1] = -1
  test_visible = np.array([[True, True], [True, True], [True, False]])
  result = regression.taichi_regression(
      train_detected, to_normalised(train_truth), train_visible, test_detected,
      to_normalised(test_truth), test_visible)
  assert result.protocol == regression.TAICHI_PROTOCOL
  np.testing.assert_allclose(result.value, 4.0, atol=1e-6)
  np.testing.assert_allclose(result.details['per_coordinate_mae'], [[2., 0.], [0., 2.]],
                             atol=1e-6)
  np.testing.assert_allclose(result.details['train_score'], 0.0, atol=1e-6)


def test_swap_permutation_reproduces_autolink_list():
  permutation = regression.swap_permutation(h36m.AUTOLINK_SWAP_PAIRS, 32)
  # Hand-derived from AutoLink's loop: (21, 28) overwrites (20, 28)'s entry for 28.
  assert permutation[20] == 28 and permutation[21] == 28 and permutation[28] == 21
  assert permutation[29] == 29 and permutation[16] == 16 and permutation[24] == 24
  flip = regression.swap_permutation(h36m.H36M_FLIP_PAIRS, 32)
  np.testing.assert_array_equal(flip[flip], np.arange(32))   # an involution
  with pytest.raises(ValueError, match='out of range'):
    regression.swap_permutation([(0, 40)], 32)


def _h36m_toy(rng, num_frames):
  """Detections [F, 2, 2] and joints [F, 3, 2] in [-1, 1]: centre, left, right."""
  detected = rng.uniform(-0.8, 0.8, (num_frames, 2, 2))
  unit = 0.5 * detected + 0.5
  beta = np.array([[0.5, 0.2, 0.1, 0.3], [0.1, 0.6, 0.2, 0.0], [0.3, 0.1, 0.4, 0.2],
                   [0.0, 0.3, 0.2, 0.6]])            # [4 features, 2 coords of joint 0..]
  joints = np.stack([unit.reshape(-1, 4) @ beta[:, :2], unit.reshape(-1, 4) @ beta[:, 2:],
                     unit.reshape(-1, 4) @ beta[:, [1, 3]]], axis=1)
  return detected, 2 * joints - 1


def test_h36m_swap_correction_and_units():
  rng = np.random.default_rng(3)
  detected, truth = _h36m_toy(rng, 40)
  pairs = ((1, 2),)
  train_truth = truth.copy()
  train_truth[:12] = train_truth[:12][:, [0, 2, 1]]      # 30% of the labels flipped
  regressor = regression.fit_h36m_regression(detected, train_truth, pairs,
                                             swap_tolerance=0)
  test_detected, test_truth = _h36m_toy(rng, 4)
  test_truth[1] = test_truth[1][[0, 2, 1]]               # flipped: corrected to 0 error
  test_truth[2] += 2 * np.array([0.03, 0.04])            # (0.03, 0.04) in [0, 1] units
  result = regression.evaluate_h36m_regression(regressor, test_detected, test_truth, pairs)
  assert result.protocol == regression.H36M_PROTOCOL
  # Frame 2 is off by 5% of the image at every joint; the mean over 4 frames is 1.25.
  np.testing.assert_allclose(result.details['per_frame'], [0, 0, 5, 0], atol=1e-6)
  np.testing.assert_allclose(result.value, 1.25, atol=1e-6)
  assert result.details['swapped'].tolist() == [False, True, False, False]
  # Without swapping in the fit, the flipped training labels spoil the regression.
  unswapped = regression.h36m_regression(detected, train_truth, test_detected, test_truth,
                                         swap_pairs=pairs, swap_tolerance=None,
                                         outlier_std=None)
  assert unswapped.value > 1.5


def test_h36m_outlier_removal():
  rng = np.random.default_rng(4)
  detected, truth = _h36m_toy(rng, 40)
  truth[7] += 1.0                                        # one grossly wrong label
  test_detected, test_truth = _h36m_toy(rng, 5)
  kwargs = dict(swap_pairs=((1, 2),), swap_tolerance=None)
  robust = regression.h36m_regression(detected, truth, test_detected, test_truth,
                                      outlier_std=3.0, **kwargs)
  plain = regression.h36m_regression(detected, truth, test_detected, test_truth,
                                     outlier_std=None, **kwargs)
  np.testing.assert_allclose(robust.value, 0.0, atol=1e-6)
  assert plain.value > 0.1


def test_bad_shapes_raise():
  with pytest.raises(ValueError, match=r'\[F, N, 2\]'):
    regression.fit_regression(np.zeros((3, 2)), np.zeros((3, 1, 2)))
  with pytest.raises(ValueError, match='visible'):
    regression.fit_regression(np.zeros((3, 2, 2)), np.zeros((3, 1, 2)), np.ones((3, 2)))


def test_regression_for_dataset_dispatch():
  rng = np.random.default_rng(5)
  detected, truth = _h36m_toy(rng, 30)
  visible = np.ones(truth.shape[:2], bool)
  test_detected, test_truth = _h36m_toy(rng, 4)
  test_truth = test_truth + np.array([0.06, 0.08])       # L2 0.1 in [-1, 1]: 5% of the image
  train, test = (detected, truth, visible), (test_detected, test_truth, visible[:4])
  generic = regression.regression_for_dataset('synthetic', train, test)
  assert generic.protocol == regression.GENERIC_PROTOCOL
  np.testing.assert_allclose(generic.value, 5.0, atol=1e-6)
  h36m_result = regression.regression_for_dataset('h36m', train, test, swap_pairs=((1, 2),))
  assert h36m_result.protocol == regression.H36M_PROTOCOL
  np.testing.assert_allclose(h36m_result.value, 5.0, atol=1e-6)
  taichi = regression.regression_for_dataset('taichi', train, test)
  assert taichi.protocol == regression.TAICHI_PROTOCOL
  # |dx| = 0.06 * 128 = 7.68 and |dy| = 0.08 * 128 = 10.24 pixels at each of 3 joints.
  np.testing.assert_allclose(taichi.value, 3 * (7.68 + 10.24), atol=1e-6)
