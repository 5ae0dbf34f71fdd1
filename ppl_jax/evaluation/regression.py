"""Linear-regression evaluation protocols (SPEC 4; AutoLink / Zhang et al. 2018).

Every protocol returns a `ProtocolResult` naming itself, so no number is reported
without the protocol it comes from.

Human3.6M (`h36m_regression`): closed-form least squares with no bias from the 2N
detected coordinates in [0, 1] to all 32 joints, fitted on the training split. The
ground truth's left/right labelling is ambiguous for an unsupervised detector, so
it is corrected per frame: the error against the ground truth and against the
ground truth with left/right joints swapped are compared and the lower kept.
What the references do (read from their public code):
- AutoLink (datasets/h36m.py, `regress_kp`, `test_epoch_end`): fitting alternates
  a least-squares fit with swapping the training frames whose swapped ground truth
  is closer, until at most 10 frames would still switch; then drops the frames
  whose error exceeds mean + 3 std and refits. On the test set it swaps per frame
  the same way (again stopping once <= 10 frames would switch). Its swap list
  (`ppl_jax.data.h36m.AUTOLINK_SWAP_PAIRS`) is not an involution, so a second swap
  can move to a third labelling; here each test frame takes min(error with GT,
  error with swapped GT) once, which is the keypointgan (Jakab et al.) rule
  (`correct_flips`) and equals AutoLink's loop whenever the swap is an involution,
  up to the <= 10 frames its loop leaves unswitched.
- The fit follows AutoLink (iterated swaps, tolerance 10, 3-std outlier removal);
  `swap_tolerance` and `outlier_std` switch the refinements (outlier_std=None:
  no outlier removal).
Error: mean over joints and test frames of the L2 distance in units of the image
size (coordinates in [0, 1]), reported x100.

Taichi (`taichi_regression`): one least-squares regression with bias per (joint,
coordinate) from the detected coordinates to the labels, both in pixels at 256 x 256
(AutoLink's datasets/taichi.py), each fitted and
evaluated only on the frames where that coordinate is labelled; score = sum over
the 18 x 2 = 36 per-coordinate mean absolute errors (pixels). With a bias the fit
is invariant to affine rescaling of the features, so AutoLink's (x + 1) * 127.5
and our half-pixel (x + 1) * 128 - 0.5 give identical predictions.

Generic (`fit_regression`, `evaluate_regression`): the same per-(joint, coordinate)
masked regression for any labels, e.g. a user's DeepLabCut labels in pixels.

Least squares uses `numpy.linalg.lstsq` (minimum-norm solution when the design is
rank deficient; AutoLink adds an identity ridge in that case instead).
"""

import dataclasses
from typing import Any, Dict, Optional, Sequence, Tuple

from absl import logging
import numpy as np

H36M_PROTOCOL = 'h36m_linear_regression'
TAICHI_PROTOCOL = 'taichi_linear_regression'
GENERIC_PROTOCOL = 'linear_regression'
TAICHI_SIZE = 256   # the Taichi protocol's pixel grid


@dataclasses.dataclass(frozen=True)
class ProtocolResult:
  """A reported number with its protocol and units; `details` holds breakdowns."""
  protocol: str
  value: float
  units: str
  details: Dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class LinearRegressor:
  """Maps detected keypoints [F, N, 2] to joints [F, G, 2].

  coefficients: [D, G, 2] with D = 2N (+1 for the bias, last row).
  bias: whether a constant feature is appended.
  """
  coefficients: np.ndarray
  bias: bool

  def predict(self, detected: np.ndarray) -> np.ndarray:
    """Joints [F, G, 2] from detected keypoints [F, N, 2] (the units used in fitting)."""
    features = _features(detected, self.bias)
    if features.shape[1] != self.coefficients.shape[0]:
      raise ValueError(
          f'LinearRegressor.predict: detected keypoints give {features.shape[1]} '
          f'features, the regressor was fitted on {self.coefficients.shape[0]}.')
    num_joints = self.coefficients.shape[1]
    flat = self.coefficients.reshape(self.coefficients.shape[0], num_joints * 2)
    return (features @ flat).reshape(-1, num_joints, 2)


def _features(detected, bias):
  detected = np.asarray(detected, np.float64)
  if detected.ndim != 3 or detected.shape[-1] != 2:
    raise ValueError(f'detected keypoints must be [F, N, 2], got {detected.shape}.')
  features = detected.reshape(detected.shape[0], -1)
  if bias:
    features = np.concatenate([features, np.ones((features.shape[0], 1))], axis=1)
  return features


def _check_labels(name, detected, ground_truth, visible):
  """float64 arrays and a bool [F, G, 2] visibility mask (all True when None)."""
  detected = np.asarray(detected, np.float64)
  ground_truth = np.asarray(ground_truth, np.float64)
  if (detected.ndim != 3 or ground_truth.ndim != 3 or detected.shape[-1] != 2
      or ground_truth.shape[-1] != 2 or detected.shape[0] != ground_truth.shape[0]):
    raise ValueError(
        f'{name}: needs detected [F, N, 2] and ground_truth [F, G, 2] with the same F; '
        f'got {detected.shape} and {ground_truth.shape}.')
  if visible is None:
    visible = np.ones(ground_truth.shape, bool)
  else:
    visible = np.asarray(visible, bool)
    if visible.shape == ground_truth.shape[:2]:
      visible = np.repeat(visible[..., None], 2, axis=-1)
    if visible.shape != ground_truth.shape:
      raise ValueError(
          f'{name}: visible must be [F, G] or [F, G, 2] = {ground_truth.shape}, got '
          f'{visible.shape}.')
  return detected, ground_truth, visible


def fit_regression(detected: np.ndarray, ground_truth: np.ndarray,
                   visible: Optional[np.ndarray] = None, *, bias: bool = True
                   ) -> LinearRegressor:
  """Least squares per (joint, coordinate) on the frames where it is labelled.

  detected: [F, N, 2]; ground_truth: [F, G, 2]; visible: bool [F, G] or [F, G, 2]
  (None = all labelled). Units are the caller's (e.g. pixels); predictions use them.
  A coordinate labelled in no frame gets NaN coefficients (and is skipped, with a
  warning, by `evaluate_regression`).
  """
  detected, ground_truth, visible = _check_labels('fit_regression', detected,
                                                  ground_truth, visible)
  features = _features(detected, bias)
  num_joints = ground_truth.shape[1]
  targets = ground_truth.reshape(-1, num_joints * 2)
  mask = visible.reshape(-1, num_joints * 2)
  if mask.all():
    coefficients = np.linalg.lstsq(features, targets, rcond=None)[0]
  else:
    # Each column has its own set of labelled frames, so one solve per column.
    coefficients = np.full((features.shape[1], num_joints * 2), np.nan)
    for column in range(num_joints * 2):
      rows = mask[:, column]
      if rows.any():
        coefficients[:, column] = np.linalg.lstsq(features[rows], targets[rows, column],
                                                  rcond=None)[0]
  return LinearRegressor(coefficients.reshape(-1, num_joints, 2), bias)


def _masked_errors(predicted, ground_truth, visible):
  """Per-coordinate MAE [G, 2], per-joint mean L2 [G] (NaN where unlabelled), mean L2."""
  with np.errstate(invalid='ignore', divide='ignore'):
    counts = visible.sum(axis=0)
    mae = np.where(visible, np.abs(predicted - ground_truth), 0.0).sum(axis=0) / counts
    joint_visible = visible.all(axis=-1)
    distance = np.linalg.norm(predicted - ground_truth, axis=-1)
    joint_counts = joint_visible.sum(axis=0)
    per_joint = np.where(joint_visible, distance, 0.0).sum(axis=0) / joint_counts
  num_pairs = int(joint_visible.sum())
  mean_l2 = float(np.where(joint_visible, distance, 0.0).sum() / max(num_pairs, 1))
  return mae, per_joint, mean_l2, num_pairs


def evaluate_regression(regressor: LinearRegressor, detected: np.ndarray,
                        ground_truth: np.ndarray, visible: Optional[np.ndarray] = None,
                        *, units: str = 'pixels') -> ProtocolResult:
  """Mean L2 over labelled (frame, joint) pairs of the regressed joints.

  details: 'per_joint' mean L2 [G], 'per_coordinate_mae' [G, 2] (NaN where no label),
  'sum_mae' (sum over labelled coordinates), 'num_labels'.
  """
  detected, ground_truth, visible = _check_labels('evaluate_regression', detected,
                                                  ground_truth, visible)
  predicted = regressor.predict(detected)
  if predicted.shape[1] != ground_truth.shape[1]:
    raise ValueError(f'evaluate_regression: the regressor predicts {predicted.shape[1]} '
                     f'joints, ground_truth has {ground_truth.shape[1]}.')
  unfitted = np.isnan(regressor.coefficients).any(axis=0)
  if (unfitted & visible.any(axis=0)).any():
    logging.warning('evaluate_regression: joints %s were never labelled when fitting; '
                    'they are left out.', sorted(set(np.nonzero(unfitted)[0].tolist())))
  visible = visible & ~unfitted[None]
  mae, per_joint, mean_l2, num_pairs = _masked_errors(predicted, ground_truth, visible)
  if num_pairs == 0:
    raise ValueError('evaluate_regression: no labelled (frame, joint) pair to evaluate.')
  return ProtocolResult(GENERIC_PROTOCOL, mean_l2, f'{units} (mean L2)', {
      'per_joint': per_joint, 'per_coordinate_mae': mae,
      'sum_mae': float(np.nansum(mae)), 'num_labels': num_pairs})


def swap_permutation(swap_pairs: Sequence[Tuple[int, int]], num_joints: int) -> np.ndarray:
  """Index map p with swapped[:, j] = points[:, p[j]], built pair by pair as AutoLink does.

  For a list in which a joint appears twice (AutoLink's (20, 28), (21, 28)) the later
  pair overwrites the earlier, reproducing AutoLink's `swap_points` exactly.
  """
  permutation = np.arange(num_joints)
  for a, b in swap_pairs:
    if not (0 <= a < num_joints and 0 <= b < num_joints):
      raise ValueError(f'swap pair {(a, b)} is out of range for {num_joints} joints.')
    permutation[a], permutation[b] = b, a
  return permutation


def _to_unit(points):
  """[-1, 1] normalised coordinates -> [0, 1] (fraction of the image size)."""
  return 0.5 * np.asarray(points, np.float64) + 0.5


def _frame_errors(predicted, ground_truth):
  """Mean over joints of the L2 distance, per frame [F]."""
  return np.linalg.norm(predicted - ground_truth, axis=-1).mean(axis=1)


def fit_h36m_regression(detected: np.ndarray, ground_truth: np.ndarray,
                        swap_pairs: Sequence[Tuple[int, int]], *,
                        swap_tolerance: Optional[int] = 10,
                        outlier_std: Optional[float] = 3.0,
                        max_rounds: int = 100) -> LinearRegressor:
  """Fits the Human3.6M regressor (no bias) on the training split, AutoLink style.

  detected: [F, N, 2] and ground_truth: [F, G, 2], both normalised to [-1, 1]
  (the pipeline's convention; [0, 1] = (x + 1) / 2 exactly for H36M labels).
  swap_tolerance: stop re-swapping the training ground truth once at most this many
  frames would switch (None: no swapping during the fit). outlier_std: after that,
  refit without the frames whose error exceeds mean + outlier_std * std (None: no).
  The returned regressor works on [0, 1] features: use `evaluate_h36m_regression`.
  """
  detected, ground_truth, _ = _check_labels('fit_h36m_regression', detected,
                                            ground_truth, None)
  features = _features(_to_unit(detected), bias=False)
  targets = _to_unit(ground_truth)
  num_frames, num_joints = targets.shape[:2]
  permutation = swap_permutation(swap_pairs, num_joints)
  flat = targets.reshape(num_frames, -1)
  for _ in range(max_rounds):
    beta = np.linalg.lstsq(features, flat, rcond=None)[0]
    predicted = (features @ beta).reshape(num_frames, num_joints, 2)
    current = flat.reshape(num_frames, num_joints, 2)
    errors = _frame_errors(predicted, current)
    if swap_tolerance is None:
      break
    swapped = current[:, permutation]
    switch = errors > _frame_errors(predicted, swapped)
    if switch.sum() <= swap_tolerance:
      break
    flat = np.where(switch[:, None], swapped.reshape(num_frames, -1), flat)
  else:
    logging.warning('fit_h36m_regression: swaps still changing after %d rounds.', max_rounds)
  if outlier_std is not None:
    # AutoLink keeps error < mean + 3 std; '<=' also keeps frames when all errors tie.
    keep = errors <= errors.mean() + outlier_std * errors.std(ddof=1)
    beta = np.linalg.lstsq(features[keep], flat[keep], rcond=None)[0]
  return LinearRegressor(beta.reshape(-1, num_joints, 2), bias=False)


def evaluate_h36m_regression(regressor: LinearRegressor, detected: np.ndarray,
                             ground_truth: np.ndarray,
                             swap_pairs: Sequence[Tuple[int, int]]) -> ProtocolResult:
  """Human3.6M error x100 (units of the image size), with per-frame swap correction.

  detected [F, N, 2], ground_truth [F, G, 2], both in [-1, 1]. details: 'per_frame'
  error [F] (x100), 'swapped' bool [F], 'num_frames'.
  """
  detected, ground_truth, _ = _check_labels('evaluate_h36m_regression', detected,
                                            ground_truth, None)
  if regressor.bias:
    raise ValueError('evaluate_h36m_regression needs a regressor without bias '
                     '(from fit_h36m_regression).')
  predicted = regressor.predict(_to_unit(detected))
  targets = _to_unit(ground_truth)
  permutation = swap_permutation(swap_pairs, targets.shape[1])
  errors = _frame_errors(predicted, targets)
  swapped_errors = _frame_errors(predicted, targets[:, permutation])
  per_frame = np.minimum(errors, swapped_errors)
  return ProtocolResult(H36M_PROTOCOL, float(per_frame.mean() * 100),
                        'L2 / image size x 100', {
                            'per_frame': per_frame * 100,
                            'swapped': swapped_errors < errors,
                            'num_frames': int(per_frame.shape[0])})


def h36m_regression(train_detected, train_ground_truth, test_detected, test_ground_truth,
                    *, swap_pairs: Sequence[Tuple[int, int]], **fit_kwargs) -> ProtocolResult:
  """Fit on the training split, evaluate on the test split (all in [-1, 1]).

  swap_pairs: e.g. `ppl_jax.data.h36m.H36M_FLIP_PAIRS` (every left/right pair) or
  `AUTOLINK_SWAP_PAIRS` (AutoLink's list, to reproduce its numbers).
  fit_kwargs go to `fit_h36m_regression`.
  """
  regressor = fit_h36m_regression(train_detected, train_ground_truth, swap_pairs,
                                  **fit_kwargs)
  return evaluate_h36m_regression(regressor, test_detected, test_ground_truth, swap_pairs)


def taichi_regression(train_detected, train_ground_truth, train_visible, test_detected,
                      test_ground_truth, test_visible) -> ProtocolResult:
  """Taichi score: sum over (joint, coordinate) of the test MAE, pixels at 256 x 256.

  *_detected: [F, N, 2] and *_ground_truth: [F, G, 2], normalised to [-1, 1] as
  `input_pipeline.create_eval_dataset` yields them (the 256-pixel labels map back
  exactly); *_visible: bool [F, G] (a -1 in the label file = not visible).
  details: 'per_coordinate_mae' [G, 2], 'train_score' (the same sum on the training
  split), 'num_labels'.
  """
  def pixels(points):
    return (np.asarray(points, np.float64) + 1.0) * (TAICHI_SIZE / 2.0) - 0.5

  regressor = fit_regression(pixels(train_detected), pixels(train_ground_truth),
                             train_visible, bias=True)
  train = evaluate_regression(regressor, pixels(train_detected), pixels(train_ground_truth),
                              train_visible)
  test = evaluate_regression(regressor, pixels(test_detected), pixels(test_ground_truth),
                             test_visible)
  return ProtocolResult(TAICHI_PROTOCOL, test.details['sum_mae'],
                        f'pixels at {TAICHI_SIZE} (sum of per-coordinate MAE)', {
                            'per_coordinate_mae': test.details['per_coordinate_mae'],
                            'train_score': train.details['sum_mae'],
                            'num_labels': test.details['num_labels']})


def regression_for_dataset(name: str, train: Sequence[np.ndarray], test: Sequence[np.ndarray],
                           *, swap_pairs: Optional[Sequence[Tuple[int, int]]] = None
                           ) -> ProtocolResult:
  """The regression protocol of dataset `name` (config.data.name).

  train, test: (predicted [F, N, 2], keypoints [F, G, 2], visible [F, G]), all in
  [-1, 1], as `ppl_jax.train.predict` returns them for the training / test split.
  'h36m': `h36m_regression` with `swap_pairs` (default: every left/right pair,
  `H36M_FLIP_PAIRS`; pass `AUTOLINK_SWAP_PAIRS` to reproduce AutoLink); 'taichi':
  `taichi_regression`; anything else: `fit_regression` with bias per (joint,
  coordinate), reported as mean L2 in percent of the image size.
  """
  if name == 'h36m':
    if swap_pairs is None:
      from ppl_jax.data import h36m  # pylint: disable=g-import-not-at-top
      swap_pairs = h36m.H36M_FLIP_PAIRS
    return h36m_regression(train[0], train[1], test[0], test[1], swap_pairs=swap_pairs)
  if name == 'taichi':
    return taichi_regression(*train, *test)
  # (x + 1) * 50 maps [-1, 1] to percent of the image size.
  percent = lambda points: (np.asarray(points, np.float64) + 1.0) * 50.0
  regressor = fit_regression(percent(train[0]), percent(train[1]), train[2])
  return evaluate_regression(regressor, percent(test[0]), percent(test[1]), test[2],
                             units='% of image size')
