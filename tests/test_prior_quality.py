"""Prior quality on hand-made skeletons, drifts and a tiny model's parameters."""

import numpy as np
import pytest

from ppl_jax import config as config_lib
from ppl_jax.evaluation import prior_quality
from ppl_jax.models import build_model

# Five joints in a chain; joints 1 and 2 are both served by keypoint 0.
SKELETON = ((0, 1), (1, 2), (2, 3), (3, 4))
ASSIGNMENT = np.array([2, 0, 0, 1, 3])


def _weights(entries, size=4, base=0.1):
  weights = np.full((size, size), base)
  np.fill_diagonal(weights, 0.0)
  for (i, j), value in entries.items():
    weights[i, j] = weights[j, i] = value
  return weights


def test_skeleton_mapping_hand_computed():
  # (0,1) -> (2,0); (1,2) -> (0,0) dropped; (2,3) -> (0,1); (3,4) -> (1,3).
  assert prior_quality.skeleton_to_keypoint_edges(SKELETON, ASSIGNMENT) == (
      (0, 1), (0, 2), (1, 3))


def test_edge_precision_recall_hand_computed():
  weights = _weights({(0, 1): 0.9, (0, 2): 0.8, (2, 3): 0.7, (1, 3): 0.05})
  scores = prior_quality.edge_precision_recall(weights, ASSIGNMENT, SKELETON)
  # Top 3: (0,1), (0,2), (2,3); two of them are skeleton pairs.
  assert scores.predicted == ((0, 1), (0, 2), (2, 3))
  assert scores.correct == ((0, 1), (0, 2))
  assert scores.precision == pytest.approx(2 / 3)
  assert scores.recall == pytest.approx(2 / 3)
  thresholded = prior_quality.edge_precision_recall(weights, ASSIGNMENT, SKELETON,
                                                    threshold=0.75)
  assert thresholded.precision == 1.0
  assert thresholded.recall == pytest.approx(2 / 3)
  assert thresholded.f1 == pytest.approx(0.8)
  result = thresholded.as_result()
  assert result.protocol == prior_quality.EDGE_PROTOCOL and result.value == pytest.approx(0.8)
  perfect = prior_quality.edge_precision_recall(
      _weights({(0, 1): 1.0, (0, 2): 1.0, (1, 3): 1.0}), ASSIGNMENT, SKELETON)
  assert perfect.precision == perfect.recall == perfect.f1 == 1.0


def test_edge_inputs_checked():
  with pytest.raises(ValueError, match='outside'):
    prior_quality.skeleton_to_keypoint_edges(((0, 9),), ASSIGNMENT)
  with pytest.raises(ValueError, match='exactly one'):
    prior_quality.connectivity_edges(np.eye(3), top_k=1, threshold=0.5)
  with pytest.raises(ValueError, match='no keypoint pair'):
    prior_quality.edge_precision_recall(np.eye(3), np.array([0, 0]), ((0, 1),))


def test_prior_drift_hand_computed():
  priors = np.zeros((3, 2, 2))
  priors[1, 0] = (0.3, 0.4)        # keypoint 0 moves 0.5, keypoint 1 stays: mean 0.25
  priors[2] = priors[1]
  priors[2, 1] = (0.0, -1.0)       # keypoint 1 moves 1.0: mean 0.5
  connectivities = np.zeros((3, 2, 2))
  connectivities[1] = _weights({}, size=2, base=0.3)   # the one pair: 0 -> 0.3
  connectivities[2] = _weights({}, size=2, base=0.9)   # 0.3 -> 0.9
  drift = prior_quality.prior_drift(priors, connectivities)
  np.testing.assert_allclose(drift['keypoint_drift'], [0.25, 0.5])
  np.testing.assert_allclose(drift['connectivity_drift'], [0.3, 0.6])
  with pytest.raises(ValueError, match='connectivities'):
    prior_quality.prior_drift(priors, np.zeros((3, 3, 3)))


def test_extract_prior_reads_the_parameters():
  config = config_lib.default_config()
  config_lib.make_tiny(config)
  config.model.num_parts = 5
  config.model.keypoint_prior = 'random'
  model = build_model(config)
  rng = np.random.default_rng(0)
  logits = rng.normal(size=(5, 5)).astype(np.float32)
  points = rng.uniform(-1, 1, (5, 2)).astype(np.float32)
  variables = {'params': {'connectivity': {'logits': logits},
                          'keypoint_prior': {'points': points}}}
  prior, connectivity = prior_quality.extract_prior(model, variables)
  np.testing.assert_allclose(prior, points)
  symmetric = 0.5 * (logits + logits.T).astype(np.float64)
  expected = np.log1p(np.exp(symmetric)) * (1 - np.eye(5))
  np.testing.assert_allclose(connectivity, expected, rtol=1e-5, atol=1e-6)
