"""Similarity warps of images and points, and the equivariance loss, against closed forms."""

import jax
import jax.numpy as jnp
import numpy as np
from scipy import ndimage

from ppl_jax import ops
from ppl_jax.losses import objective


def _blob(h, w, row, col, sigma=1.5):
  image = np.zeros((h, w), np.float64)
  image[row, col] = 1
  return ndimage.gaussian_filter(image, sigma)


def test_random_similarity_is_a_scaled_rotation_within_bounds():
  matrix, shift = ops.random_similarity(jax.random.key(0), 512, max_degrees=15.0,
                                        max_log_scale=0.1, max_shift=0.05)
  matrix, shift = np.asarray(matrix, np.float64), np.asarray(shift, np.float64)
  scale = np.sqrt(np.linalg.det(matrix))
  angle = np.degrees(np.arctan2(matrix[:, 1, 0], matrix[:, 0, 0]))
  np.testing.assert_allclose(matrix[:, 0, 0], matrix[:, 1, 1], atol=1e-6)
  np.testing.assert_allclose(matrix[:, 0, 1], -matrix[:, 1, 0], atol=1e-6)
  assert np.all(np.abs(angle) <= 15.0 + 1e-4) and np.abs(angle).max() > 12
  assert np.all(np.abs(np.log(scale)) <= 0.1 + 1e-5)
  assert np.all(np.abs(shift) <= 0.05) and np.abs(shift).max() > 0.04


def test_random_similarity_flips_the_drawn_warps_only():
  kwargs = dict(max_degrees=15.0, max_log_scale=0.1, max_shift=0.05)
  plain, plain_shift = ops.random_similarity(jax.random.key(0), 512, **kwargs)
  matrix, shift = ops.random_similarity(jax.random.key(0), 512, flip_prob=0.5, **kwargs)
  plain, matrix = np.asarray(plain, np.float64), np.asarray(matrix, np.float64)
  np.testing.assert_array_equal(shift, plain_shift)
  flipped = np.linalg.det(matrix) < 0
  assert 0.4 < flipped.mean() < 0.6
  # A flipped warp is the same draw times diag(-1, 1); the others are unchanged.
  np.testing.assert_array_equal(matrix[~flipped], plain[~flipped])
  np.testing.assert_allclose(matrix[flipped], plain[flipped] @ np.diag([-1.0, 1.0]), atol=0)
  always, _ = ops.random_similarity(jax.random.key(0), 64, flip_prob=1.0, **kwargs)
  assert np.all(np.linalg.det(np.asarray(always, np.float64)) < 0)


def test_mirror_warp_reverses_columns_and_negates_x():
  images = np.random.default_rng(0).uniform(-1, 1, (2, 6, 8, 3))
  mirror = jnp.asarray(np.diag([-1.0, 1.0])[None].repeat(2, 0), jnp.float32)
  zero = jnp.zeros((2, 2), jnp.float32)
  warped = ops.warp_images(jnp.asarray(images, jnp.float32), mirror, zero)
  np.testing.assert_allclose(warped, images[:, :, ::-1], atol=1e-6)
  points = np.random.default_rng(1).uniform(-1, 1, (2, 5, 2))
  moved = ops.warp_points(jnp.asarray(points, jnp.float32), mirror, zero)
  np.testing.assert_allclose(moved, points * [-1.0, 1.0], atol=1e-6)


def test_warped_blob_lands_where_warp_points_says():
  h, w = 32, 40
  blob = _blob(h, w, 11, 25)
  matrix = np.array([[[np.cos(0.3), -np.sin(0.3)], [np.sin(0.3), np.cos(0.3)]]]) * 1.1
  shift = np.array([[0.05, -0.08]])
  warped = np.asarray(ops.warp_images(jnp.asarray(blob[None, :, :, None], jnp.float32),
                                      jnp.asarray(matrix, jnp.float32),
                                      jnp.asarray(shift, jnp.float32)))[0, :, :, 0]
  # Reference: the warped image's pixel q shows the input at A q + t (float64 bilinear).
  ys = (2 * np.arange(h) + 1) / h - 1
  xs = (2 * np.arange(w) + 1) / w - 1
  qx, qy = np.meshgrid(xs, ys)
  src = np.einsum('ij,jhw->ihw', matrix[0], np.stack([qx, qy])) + shift[0][:, None, None]
  want = ndimage.map_coordinates(blob, [(src[1] + 1) * h / 2 - 0.5, (src[0] + 1) * w / 2 - 0.5],
                                 order=1, mode='nearest')
  np.testing.assert_allclose(warped, want, atol=1e-5)
  # The blob's centre (pixel 11, 25) moves to A^-1 (p - t).
  centre = np.array([[[(2 * 25 + 1) / w - 1, (2 * 11 + 1) / h - 1]]])
  moved = np.asarray(ops.warp_points(jnp.asarray(centre, jnp.float32),
                                     jnp.asarray(matrix, jnp.float32),
                                     jnp.asarray(shift, jnp.float32)))[0, 0]
  want_px = np.linalg.solve(matrix[0], centre[0, 0] - shift[0])
  np.testing.assert_allclose(moved, want_px, atol=1e-6)
  mass = warped / warped.sum()
  com = np.array([(mass * qx).sum(), (mass * qy).sum()])
  np.testing.assert_allclose(com, want_px, atol=0.02)


def test_equivariance_loss_closed_form():
  rng = np.random.default_rng(0)
  keypoints = rng.uniform(-0.8, 0.8, (3, 5, 2))
  matrix = np.stack([np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]]) * s
                     for a, s in [(0.1, 1.0), (-0.2, 0.9), (0.3, 1.1)]])
  shift = rng.uniform(-0.1, 0.1, (3, 2))
  moved = np.einsum('bij,bnj->bni', np.linalg.inv(matrix), keypoints - shift[:, None])
  args = [jnp.asarray(a, jnp.float32) for a in (keypoints, matrix, shift)]
  exact = objective.equivariance_loss(jnp.asarray(moved, jnp.float32), *args)
  assert float(exact) < 1e-10
  offset = rng.normal(0, 0.05, moved.shape)
  got = objective.equivariance_loss(jnp.asarray(moved + offset, jnp.float32), *args)
  np.testing.assert_allclose(got, np.mean(offset ** 2), rtol=1e-4)


def test_invert_some_negates_the_drawn_images():
  images = jnp.asarray(np.random.default_rng(0).uniform(-1, 1, (400, 2, 3, 3)), jnp.float32)
  out, inverted = ops.invert_some(jax.random.key(1), images, 0.5)
  out, inverted = np.asarray(out), np.asarray(inverted)
  np.testing.assert_array_equal(out[inverted], -np.asarray(images)[inverted])
  np.testing.assert_array_equal(out[~inverted], np.asarray(images)[~inverted])
  assert 0.4 < inverted.mean() < 0.6
  for prob, expected in ((0.0, False), (1.0, True)):
    assert np.all(np.asarray(ops.invert_some(jax.random.key(2), images, prob)[1]) == expected)
