"""benchmarks/joint_offsets.py on a hand-made case: a rigid follower and a scattered one."""

import importlib.util
import os

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _module():
  spec = importlib.util.spec_from_file_location(
      'joint_offsets_bench', os.path.join(REPO, 'benchmarks', 'joint_offsets.py'))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


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
