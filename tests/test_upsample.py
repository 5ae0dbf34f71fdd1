"""ops.upsample2x against a float64 re-derivation of bilinear half-pixel sampling."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ppl_jax import ops


def _bilinear_matrix(n):
  """[2n, n] float64: output j samples the input at (j + 1/2) / 2 - 1/2, linearly between
  the two nearest input centres, clamped to the edge centres."""
  m = np.zeros((2 * n, n))
  for j in range(2 * n):
    t = min(max((j + 0.5) / 2 - 0.5, 0.0), n - 1.0)
    low = int(np.floor(t))
    high = min(low + 1, n - 1)
    m[j, low] += 1 - (t - low)
    m[j, high] += t - low
  return m


@pytest.mark.parametrize('shape', [(2, 5, 3, 4), (1, 1, 6, 2), (1, 2, 1, 3), (3, 8, 8, 1)])
def test_upsample2x_and_its_gradient_equal_the_interpolation_matrix(shape):
  rng = np.random.default_rng(0)
  x = rng.normal(size=shape)
  g = rng.normal(size=(shape[0], 2 * shape[1], 2 * shape[2], shape[3]))
  rows, cols = _bilinear_matrix(shape[1]), _bilinear_matrix(shape[2])
  expected = np.einsum('ih,jw,bhwc->bijc', rows, cols, x)
  expected_grad = np.einsum('ih,jw,bijc->bhwc', rows, cols, g)   # the transposed map

  y, vjp = jax.vjp(ops.upsample2x, jnp.asarray(x, jnp.float32))
  (grad,) = vjp(jnp.asarray(g, jnp.float32))
  np.testing.assert_allclose(np.asarray(y), expected, atol=1e-5)
  np.testing.assert_allclose(np.asarray(grad), expected_grad, atol=1e-5)
  # The same map as jax.image.resize's bilinear (which the models used before).
  resized = jax.image.resize(jnp.asarray(x, jnp.float32), y.shape, method='bilinear')
  np.testing.assert_allclose(np.asarray(y), np.asarray(resized), atol=1e-5)


def test_upsample2x_gradient_under_jit_matches_finite_differences():
  rng = np.random.default_rng(1)
  x = jnp.asarray(rng.normal(size=(1, 3, 4, 2)), jnp.float32)
  weights = jnp.asarray(rng.normal(size=(1, 6, 8, 2)), jnp.float32)
  loss = lambda x: jnp.sum(jnp.tanh(ops.upsample2x(x)) * weights)
  grad = np.asarray(jax.jit(jax.grad(loss))(x), np.float64)
  eps = 1e-2
  for index in [(0, 0, 0, 0), (0, 2, 3, 1), (0, 1, 2, 0), (0, 2, 0, 1)]:
    step = np.zeros(x.shape, np.float32)
    step[index] = eps
    numeric = (float(loss(x + step)) - float(loss(x - step))) / (2 * eps)
    assert abs(grad[index] - numeric) < 2e-3 * max(1.0, abs(numeric)), index


def test_upsample2x_in_bfloat16_rounds_once():
  rng = np.random.default_rng(2)
  x = jnp.asarray(rng.normal(size=(2, 6, 5, 3)), jnp.bfloat16)
  g = jnp.asarray(rng.normal(size=(2, 12, 10, 3)), jnp.bfloat16)
  rows, cols = _bilinear_matrix(6), _bilinear_matrix(5)
  expected = np.einsum('ih,jw,bhwc->bijc', rows, cols, np.asarray(x, np.float64))
  expected_grad = np.einsum('ih,jw,bijc->bhwc', rows, cols, np.asarray(g, np.float64))
  y, vjp = jax.vjp(ops.upsample2x, x)
  (grad,) = vjp(g)
  assert y.dtype == jnp.bfloat16 and grad.dtype == jnp.bfloat16
  # One rounding to bfloat16 (8 significant bits): within half an ulp, 2^-8 relative.
  for got, want in ((y, expected), (grad, expected_grad)):
    got = np.asarray(got, np.float64)
    assert np.all(np.abs(got - want) <= 2.0 ** -8 * np.abs(want) + 1e-6)
