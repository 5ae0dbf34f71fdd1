"""Quality of the learned prior (SPEC 4, "prior quality"; paper Fig. 5d).

Connectivity versus a ground-truth skeleton: the matching protocol's assignment
(joint g -> detected keypoint a(g)) carries every skeleton edge (g, h) to the
keypoint pair (a(g), a(h)); pairs with a(g) = a(h) (two joints served by one
keypoint) are dropped and duplicates merged. The comparison is in keypoint space:
the predicted edges are the top-k pairs i < j of W (k = number of mapped skeleton
edges by default) or the pairs with w_ij >= threshold; precision = correct /
predicted, recall = correct / skeleton pairs. A keypoint serving no joint can only
add false positives.

Drift over training: mean L2 movement of the keypoint prior T between consecutive
checkpoints, and mean absolute change of W over the pairs i < j.
"""

import dataclasses
from typing import Optional, Sequence, Tuple

import numpy as np

from ppl_jax.evaluation.regression import ProtocolResult

EDGE_PROTOCOL = 'connectivity_edge_precision_recall'


@dataclasses.dataclass(frozen=True)
class EdgeScores:
  """Edge precision / recall of the learned connectivity (keypoint pairs i < j)."""
  precision: float
  recall: float
  f1: float
  predicted: Tuple[Tuple[int, int], ...]
  ground_truth: Tuple[Tuple[int, int], ...]
  correct: Tuple[Tuple[int, int], ...]

  def as_result(self) -> ProtocolResult:
    return ProtocolResult(EDGE_PROTOCOL, self.f1, 'F1 of keypoint-pair edges', {
        'precision': self.precision, 'recall': self.recall,
        'num_predicted': len(self.predicted), 'num_ground_truth': len(self.ground_truth)})


def skeleton_to_keypoint_edges(skeleton: Sequence[Tuple[int, int]],
                               assignment: np.ndarray) -> Tuple[Tuple[int, int], ...]:
  """Skeleton edges between joints -> sorted distinct keypoint pairs i < j."""
  assignment = np.asarray(assignment)
  edges = set()
  for g, h in skeleton:
    if not (0 <= g < len(assignment) and 0 <= h < len(assignment)):
      raise ValueError(f'skeleton edge {(g, h)} names a joint outside the {len(assignment)} '
                       'joints of the assignment.')
    i, j = sorted((int(assignment[g]), int(assignment[h])))
    if i != j:
      edges.add((i, j))
  return tuple(sorted(edges))


def connectivity_edges(connectivity: np.ndarray, *, top_k: Optional[int] = None,
                       threshold: Optional[float] = None) -> Tuple[Tuple[int, int], ...]:
  """Pairs i < j of W [N, N]: the top_k heaviest (ties by pair order) or w_ij >= threshold."""
  weights = np.asarray(connectivity, np.float64)
  if weights.ndim != 2 or weights.shape[0] != weights.shape[1]:
    raise ValueError(f'connectivity must be [N, N], got {weights.shape}.')
  if (top_k is None) == (threshold is None):
    raise ValueError('connectivity_edges needs exactly one of top_k and threshold.')
  rows, cols = np.triu_indices(weights.shape[0], k=1)
  values = weights[rows, cols]
  if top_k is not None:
    chosen = np.argsort(-values, kind='stable')[:top_k]
  else:
    chosen = np.nonzero(values >= threshold)[0]
  return tuple(sorted((int(rows[c]), int(cols[c])) for c in chosen))


def edge_precision_recall(connectivity: np.ndarray, assignment: np.ndarray,
                          skeleton: Sequence[Tuple[int, int]], *,
                          top_k: Optional[int] = None,
                          threshold: Optional[float] = None) -> EdgeScores:
  """Scores W [N, N] against `skeleton` (joint pairs) through `assignment` [G].

  assignment: `matching.matched_error(...).assignment`. Without top_k and threshold,
  top_k = the number of distinct keypoint pairs the skeleton maps to.
  """
  truth = skeleton_to_keypoint_edges(skeleton, assignment)
  if not truth:
    raise ValueError('edge_precision_recall: the skeleton maps to no keypoint pair '
                     '(every edge joins two joints served by the same keypoint).')
  if top_k is None and threshold is None:
    top_k = len(truth)
  predicted = connectivity_edges(connectivity, top_k=top_k, threshold=threshold)
  correct = tuple(sorted(set(predicted) & set(truth)))
  precision = len(correct) / len(predicted) if predicted else 0.0
  recall = len(correct) / len(truth)
  f1 = 2 * precision * recall / (precision + recall) if correct else 0.0
  return EdgeScores(precision, recall, f1, predicted, truth, correct)


def prior_drift(priors: np.ndarray, connectivities: np.ndarray) -> dict:
  """Movement of the prior between consecutive checkpoints.

  priors: T [C, N, 2] in [-1, 1]; connectivities: W [C, N, N].
  Returns 'keypoint_drift' [C - 1]: mean over keypoints of ||T_c+1 - T_c||_2, and
  'connectivity_drift' [C - 1]: mean over pairs i < j of |W_c+1 - W_c|.
  """
  priors = np.asarray(priors, np.float64)
  connectivities = np.asarray(connectivities, np.float64)
  if (priors.ndim != 3 or priors.shape[-1] != 2 or connectivities.ndim != 3
      or connectivities.shape[0] != priors.shape[0]
      or connectivities.shape[1:] != (priors.shape[1],) * 2):
    raise ValueError('prior_drift needs priors [C, N, 2] and connectivities [C, N, N]; got '
                     f'{priors.shape} and {connectivities.shape}.')
  rows, cols = np.triu_indices(priors.shape[1], k=1)
  pairs = connectivities[:, rows, cols]
  return {
      'keypoint_drift': np.linalg.norm(np.diff(priors, axis=0), axis=-1).mean(axis=1),
      'connectivity_drift': np.abs(np.diff(pairs, axis=0)).mean(axis=1),
  }


def extract_prior(model, variables) -> Tuple[np.ndarray, np.ndarray]:
  """(T [N, 2], W [N, N]) as numpy from a PPL's variables (e.g. a restored checkpoint)."""
  prior, connectivity = model.apply(
      variables, method=lambda module: (module.prior(), module.connectivity()))
  return np.asarray(prior), np.asarray(connectivity)
