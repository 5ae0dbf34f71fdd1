"""benchmarks/joint_offsets.py on a hand-made case: a rigid follower and a scattered one."""

import numpy as np
import pytest

from conftest import load_benchmark


def _module():
  return load_benchmark('joint_offsets')


def test_bias_scatter_and_within_in_pixels():
  side = 100   # 1 unit of [-1, 1] = 50 px
  # Two joints over 4 frames of 2 videos. Keypoint 1 follows joint 0 exactly 3 px to the
  # right (x + 0.06); keypoint 0 sits at joint 1 +1 px in y in video 0, -1 px in video 1.
  truth = np.array([[[0.0, 0.0], [0.5, 0.5]]] * 4)
  predicted = np.zeros((4, 2, 2))
  predicted[:, 1] = truth[:, 0] + [0.06, 0.0]
  predicted[:, 0] = truth[:, 1] + np.array([[0, 0.02], [0, 0.02], [0, -0.02], [0, -0.02]])
  rows = _module().joint_offsets(predicted, truth, np.array([0, 0, 1, 1]), side)
  assert rows[0]['keypoint'] == 1 and rows[1]['keypoint'] == 0
  np.testing.assert_allclose(rows[0]['offset_xy'], [3.0, 0.0], atol=1e-9)
  assert rows[0]['bias'] == pytest.approx(3.0) and rows[0]['scatter'] == pytest.approx(0.0)
  assert rows[0]['within'] == 0.0            # 3 px is the radius (3% of 100 px): not within
  assert rows[1]['bias'] == pytest.approx(0.0, abs=1e-9)
  assert rows[1]['scatter'] == pytest.approx(1.0)
  assert rows[1]['scatter_in_video'] == pytest.approx(0.0, abs=1e-9)
  assert rows[1]['within'] == 1.0


def test_scatter_along_and_across_the_limb():
  side = 100
  # Joint 0 at the origin, its neighbour joint 1 to its right: the limb runs along x. The
  # keypoint of joint 0 moves +-1 px along x and +-0.5 px along y around a constant offset.
  truth = np.array([[[0.0, 0.0], [0.5, 0.0]]] * 4)
  predicted = truth.copy()
  predicted[:, 0] += np.array([[0.02, 0.01], [-0.02, -0.01], [0.02, -0.01], [-0.02, 0.01]])
  rows = _module().joint_offsets(predicted, truth, np.zeros(4, int), side, skeleton=[(0, 1)])
  assert rows[0]['along'] == pytest.approx(1.0) and rows[0]['across'] == pytest.approx(0.5)
  assert 'along' not in _module().joint_offsets(predicted, truth, np.zeros(4, int), side)[0]


def test_heatmap_precision_tells_snapped_keypoints_from_precise_ones():
  side, h = 64, 16                   # 4 px cells
  rng = np.random.default_rng(0)
  frames = 400
  truth_px = rng.uniform(-30, 30, (frames, 1, 2))
  cell = side / h
  centres = (np.floor((truth_px + side / 2) / cell) + 0.5) * cell - side / 2
  precise = truth_px + rng.normal(0, 0.3, truth_px.shape)
  predicted = np.concatenate([centres, precise], axis=1) / (side / 2)   # keypoints 0, 1
  logits = np.zeros((frames, h, h, 2))
  logits[:, 3, 5, 0] = 1e3                 # keypoint 0: all weight on one cell
  module = _module()
  snapped, = module.heatmap_precision(logits, predicted, truth_px / (side / 2), [0], side)
  np.testing.assert_allclose(snapped['cell_slope'], [-1.0, -1.0], atol=1e-9)
  assert snapped['cells'] == pytest.approx(1.0)
  fine, = module.heatmap_precision(logits, predicted, truth_px / (side / 2), [1], side)
  assert np.all(np.abs(fine['cell_slope']) < 0.1)
  assert fine['cells'] == pytest.approx(h * h)     # uniform logits: every cell
