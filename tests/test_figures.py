"""Figures: valid PNGs of the documented sizes; link intensity follows the weights."""

import numpy as np
from PIL import Image
import pytest

from ppl_jax.evaluation import figures

GREY = 0   # images in [-1, 1]: 0 shows as mid-grey (128)


def _png(path):
  with open(path, 'rb') as f:
    assert f.read(8) == b'\x89PNG\r\n\x1a\n'
  with Image.open(path) as image:
    image.load()
    return np.asarray(image.convert('RGB')).astype(int)


def _pixel(png, panel_row, panel_col, x, y, height, width, scale):
  """PNG pixel at data pixel (x, y) of a panel (the layout documented in figures)."""
  return png[int((panel_row * height + y + 0.5) * scale),
             int((panel_col * width + x + 0.5) * scale)]


def _normalised(col, row, size):
  return np.array([(2 * col + 1) / size - 1, (2 * row + 1) / size - 1])


def test_pose_overlay_link_intensity(tmp_path):
  size, scale = 32, 2
  images = np.full((3, size, size, 3), GREY, np.float32)
  # Keypoints 0-1 joined by a strong link along row 8, keypoints 2-3 by a zero-weight
  # link along row 24; 1-2 at a small weight.
  keypoints = np.stack([_normalised(4, 8, size), _normalised(27, 8, size),
                        _normalised(4, 24, size), _normalised(27, 24, size)])
  keypoints = np.repeat(keypoints[None], 3, axis=0)
  weights = np.zeros((4, 4))
  weights[0, 1] = weights[1, 0] = 2.0
  weights[1, 2] = weights[2, 1] = 0.1
  path = tmp_path / 'overlays.png'
  figures.save_pose_overlays(images, keypoints, weights, str(path), columns=2, scale=scale)
  png = _png(path)
  # 3 frames in 2 columns: 2 rows of frames + 2 rows of poses.
  assert png.shape == (4 * size * scale, 2 * size * scale, 3)
  background = _pixel(png, 0, 0, 15, 8, size, size, scale)     # a frame row: no pose
  np.testing.assert_allclose(background, [128, 128, 128], atol=1)
  strong = _pixel(png, 2, 0, 15, 8, size, size, scale)         # first pose panel
  zero = _pixel(png, 2, 0, 15, 24, size, size, scale)
  np.testing.assert_allclose(zero, background, atol=1)
  assert np.abs(strong - background).sum() > 100
  assert strong[0] > strong[1] + 100                            # the red link colour
  # The third frame's pose panel (row 3, column 0) has the link too; column 1 is empty.
  assert np.abs(_pixel(png, 3, 0, 15, 8, size, size, scale) - background).sum() > 100
  np.testing.assert_allclose(_pixel(png, 3, 1, 15, 8, size, size, scale), 0, atol=1)


def test_occlusion_strip(tmp_path):
  size, scale = 32, 1
  inputs = np.zeros((4, size, size, 3), np.uint8)
  keypoints = np.random.default_rng(0).uniform(-0.8, 0.8, (4, 5, 2))
  weights = np.ones((5, 5)) - np.eye(5)
  path = tmp_path / 'sub' / 'strip.png'
  figures.save_occlusion_strip(inputs, keypoints, weights, str(path),
                               original=np.full((size, size, 3), 255, np.uint8),
                               original_keypoints=keypoints[0], scale=scale)
  png = _png(path)
  assert png.shape == (2 * size, 5 * size, 3)
  np.testing.assert_allclose(_pixel(png, 0, 0, 3, 3, size, size, scale), 255, atol=1)
  np.testing.assert_allclose(_pixel(png, 0, 1, 3, 3, size, size, scale), 0, atol=1)
  with pytest.raises(ValueError, match='both'):
    figures.save_occlusion_strip(inputs, keypoints, weights, str(path),
                                 original=inputs[0])


def test_prior_figures(tmp_path):
  rng = np.random.default_rng(1)
  prior = rng.uniform(-0.8, 0.8, (6, 2))
  weights = rng.uniform(0, 1, (6, 6))
  weights = (weights + weights.T) * (1 - np.eye(6))
  figures.save_prior(prior, weights, str(tmp_path / 'prior.png'), size=120)
  assert _png(tmp_path / 'prior.png').shape == (120, 240, 3)
  figures.save_prior_evolution(np.stack([prior, prior * 0.5, prior * 0.1]),
                               np.stack([weights] * 3), str(tmp_path / 'evolution.png'),
                               labels=['epoch 1', 'epoch 5', 'epoch 20'], panel=64)
  assert _png(tmp_path / 'evolution.png').shape == (3 * 64, 64, 3)
  with pytest.raises(ValueError, match='labels'):
    figures.save_prior_evolution(prior[None], weights[None], str(tmp_path / 'x.png'),
                                 labels=['a', 'b'])


def test_error_vs_iteration(tmp_path):
  errors = {'0.1': [3.0, 2.5, 2.4, 2.4], '0.4': [6.0, 4.0, 3.5, 3.3]}
  figures.save_error_vs_iteration(errors, str(tmp_path / 'errors.png'), size=(320, 240))
  png = _png(tmp_path / 'errors.png')
  assert png.shape == (240, 320, 3)
  assert (png < 200).any()              # something was drawn on the white figure
  with pytest.raises(ValueError, match='no error curve'):
    figures.save_error_vs_iteration({}, str(tmp_path / 'none.png'))
