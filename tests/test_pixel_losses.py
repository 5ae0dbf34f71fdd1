"""Pixel losses against numpy float64 re-derivations and closed forms."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ppl_jax.losses import pixel


def _images(seed, shape=(2, 16, 19, 3), noise=0.3):
  rng = np.random.default_rng(seed)
  x = rng.uniform(-1, 1, shape)
  y = np.clip(x + noise * rng.standard_normal(shape), -1, 1)
  return x.astype(np.float32), y.astype(np.float32)


def _ssim_reference(x, y, data_range=1.0, size=11, sigma=1.5):
  """Per-image mean SSIM [B] in float64 of images in [0, data_range].

  Explicit 2-D Gaussian window over valid positions (Wang et al. 2004).
  """
  x = x.astype(np.float64)
  y = y.astype(np.float64)
  r = np.arange(size) - (size - 1) / 2
  g = np.exp(-(r[:, None]**2 + r[None, :]**2) / (2 * sigma**2))
  g /= g.sum()

  def filt(a):  # [B, H, W, C] -> [B, H-10, W-10, C]
    win = np.lib.stride_tricks.sliding_window_view(a, (size, size), axis=(1, 2))
    return np.einsum('bhwcij,ij->bhwc', win, g)

  mx, my = filt(x), filt(y)
  vx = filt(x * x) - mx**2
  vy = filt(y * y) - my**2
  cxy = filt(x * y) - mx * my
  c1 = (0.01 * data_range)**2
  c2 = (0.03 * data_range)**2
  s = ((2 * mx * my + c1) * (2 * cxy + c2)) / (
      (mx**2 + my**2 + c1) * (vx + vy + c2))
  return s.mean(axis=(1, 2, 3))


def test_l1_and_mse_closed_form():
  x, y = _images(0)
  d = x.astype(np.float64) - y
  np.testing.assert_allclose(pixel.l1_loss(x, y), np.abs(d).mean(), rtol=1e-6)
  np.testing.assert_allclose(pixel.mse_loss(x, y), (d**2).mean(), rtol=1e-6)
  # Hand case: constant offset 0.5 on one image of zeros.
  z = np.zeros((1, 4, 4, 3), np.float32)
  assert float(pixel.l1_loss(z + 0.5, z)) == pytest.approx(0.5)
  assert float(pixel.mse_loss(z + 0.5, z)) == pytest.approx(0.25)


def _unit(a):
  return (a.astype(np.float64) + 1) / 2


@pytest.mark.parametrize('noise', [0.05, 0.3, 1.0])
def test_ssim_matches_float64_reference(noise):
  x, y = _images(1, noise=noise)
  want = _ssim_reference(_unit(x), _unit(y))
  got = jax.jit(pixel.ssim)((x + 1) / 2, (y + 1) / 2)
  np.testing.assert_allclose(got, want, atol=2e-5)
  # The loss takes [-1, 1] images.
  np.testing.assert_allclose(pixel.ssim_loss(x, y), 1 - want.mean(), atol=2e-5)


def test_ssim_identical_is_one_and_scale_invariant():
  x, y = _images(2)
  np.testing.assert_allclose(pixel.ssim(x + 1, x + 1, data_range=2.0),
                             np.ones(2), atol=1e-6)
  assert float(pixel.ssim_loss(x, x)) == pytest.approx(0.0, abs=1e-6)
  taps = pixel.gaussian_window()
  assert taps.shape == (11,) and taps.sum() == pytest.approx(1.0)
  # [0, 2] images with L = 2 give the same SSIM as [0, 1] with L = 1.
  np.testing.assert_allclose(pixel.ssim(x + 1, y + 1, data_range=2.0),
                             _ssim_reference(_unit(x), _unit(y)), atol=2e-5)


def test_l1_ssim_mix_formula():
  x, y = _images(3)
  l1_01 = np.abs(_unit(x) - _unit(y)).mean()
  ssim_ref = _ssim_reference(_unit(x), _unit(y)).mean()
  want = 0.85 * (1 - ssim_ref) / 2 + 0.15 * l1_01
  np.testing.assert_allclose(pixel.l1_ssim_loss(x, y), want, atol=2e-5)


def test_ssim_rejects_small_or_mismatched_images():
  with pytest.raises(ValueError, match='11 x 11'):
    pixel.ssim(jnp.zeros((1, 8, 8, 3)), jnp.zeros((1, 8, 8, 3)))
  with pytest.raises(ValueError, match='same shape'):
    pixel.ssim(jnp.zeros((1, 16, 16, 3)), jnp.zeros((1, 16, 17, 3)))


def test_ssim_gradient_matches_finite_difference():
  x, y = _images(4, shape=(1, 12, 12, 1))
  direction = np.random.default_rng(5).standard_normal(x.shape).astype(
      np.float32)
  grad = jax.grad(pixel.ssim_loss)(x, y)
  analytic = float(jnp.sum(grad * direction))
  eps = 1e-2
  numeric = (float(pixel.ssim_loss(x + eps * direction, y))
             - float(pixel.ssim_loss(x - eps * direction, y))) / (2 * eps)
  assert analytic == pytest.approx(numeric, rel=2e-2, abs=1e-4)
