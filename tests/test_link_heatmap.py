"""Tests for ppl_jax.ops.link_heatmap against an independent float64 numpy re-derivation."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ppl_jax.ops import link_heatmap
from ppl_jax.ops.link_heatmap import link_heatmap_reference


def _point_segment_distance(px, py, a, b):
  """Distance from points (px, py) to segment [a, b], float64.

  Written differently from the op on purpose: the minimum of the two endpoint distances and, where
  the foot of the perpendicular falls inside the segment, the perpendicular (cross-product)
  distance.
  """
  da = np.hypot(px - a[0], py - a[1])
  db = np.hypot(px - b[0], py - b[1])
  d = np.minimum(da, db)
  ab = b - a
  length = np.hypot(ab[0], ab[1])
  if length == 0:
    return d
  along = ((px - a[0]) * ab[0] + (py - a[1]) * ab[1]) / length
  perpendicular = np.abs(ab[0] * (py - a[1]) - ab[1] * (px - a[0])) / length
  inside = (along >= 0) & (along <= length)
  return np.where(inside, np.minimum(d, perpendicular), d)


def _pixel_grid(h, w):
  """Pixel centres on [-1, 1]: column c at -1 + (2c+1)/W, row r at -1 + (2r+1)/H; [H, W] each."""
  xs = -1.0 + (2.0 * np.arange(w) + 1.0) / w
  ys = -1.0 + (2.0 * np.arange(h) + 1.0) / h
  return np.meshgrid(xs, ys)


def _numpy_heatmap(keypoints, weights, size, thick):
  """S [B, H, W] = max_{i<j} w_ij exp(-d^2/thick) by explicit loops, float64."""
  kp = np.asarray(keypoints, np.float64)
  wts = np.asarray(weights, np.float64)
  px, py = _pixel_grid(*size)
  out = np.full((kp.shape[0],) + tuple(size), -np.inf)
  n = kp.shape[1]
  for b in range(kp.shape[0]):
    for i in range(n):
      for j in range(i + 1, n):
        d = _point_segment_distance(px, py, kp[b, i], kp[b, j])
        out[b] = np.maximum(out[b], wts[i, j] * np.exp(-d**2 / thick))
  return out


def _random_inputs(seed, b, n, *, spread=1.3, zero_frac=0.0, coincident=()):
  """Keypoints uniform in [-spread, spread]^2 (so some lie outside [-1, 1]), weights in [0.1, 1]."""
  rng = np.random.default_rng(seed)
  kp = rng.uniform(-spread, spread, (b, n, 2))
  for i, j in coincident:
    kp[:, j] = kp[:, i]
  w = rng.uniform(0.1, 1.0, (n, n))
  w = (w + w.T) / 2
  w[rng.uniform(size=(n, n)) < zero_frac] = 0.0
  return kp, w


@pytest.mark.parametrize(
    'b,n,size,thick,chunk,coincident,zero_frac',
    [
        (2, 5, (17, 23), 5e-3, 8, ((0, 3),), 0.0),   # H != W, one zero-length segment
        (3, 2, (12, 12), 1e-3, 8, (), 0.0),          # N = 2 (one pair)
        (2, 7, (20, 9), 5e-4, 3, ((1, 2), (4, 6)), 0.3),  # chunk not dividing P, zero weights
        (1, 6, (16, 16), 2e-2, 1, (), 0.0),          # chunk 1
        (1, 4, (8, 11), 1e-2, 100, ((0, 1),), 0.0),  # chunk > P
    ])
def test_forward_matches_numpy(b, n, size, thick, chunk, coincident, zero_frac):
  kp, w = _random_inputs(b + n, b, n, coincident=coincident, zero_frac=zero_frac)
  expected = _numpy_heatmap(kp, w, size, thick)
  got = link_heatmap(jnp.float32(kp), jnp.float32(w), size=size, thick=thick, chunk=chunk)
  ref = link_heatmap_reference(jnp.float32(kp), jnp.float32(w), size=size, thick=thick)
  assert got.shape == (b,) + size and got.dtype == jnp.float32
  np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5)
  np.testing.assert_allclose(ref, expected, rtol=0, atol=1e-5)
  # Under jit too, and the result does not depend on the chunk size.
  jitted = jax.jit(lambda k, ww: link_heatmap(k, ww, size=size, thick=thick, chunk=2))
  np.testing.assert_allclose(jitted(jnp.float32(kp), jnp.float32(w)), expected, rtol=0, atol=1e-5)


def test_forward_hand_computed():
  # One horizontal segment from (-0.5, 0) to (0.5, 0) on a 2x4 grid: pixel centres
  # x in {-0.75, -0.25, 0.25, 0.75}, y in {-0.5, 0.5}. d^2 = 0.25 above/below the segment,
  # 0.25 + 0.0625 beyond its ends.
  kp = jnp.array([[[-0.5, 0.0], [0.5, 0.0]]])
  w = jnp.array([[0.0, 2.0], [2.0, 0.0]])
  thick = 0.25
  row = 2.0 * np.exp(-np.array([0.3125, 0.25, 0.25, 0.3125]) / thick)
  np.testing.assert_allclose(
      link_heatmap(kp, w, size=(2, 4), thick=thick)[0], np.stack([row, row]), rtol=1e-6)


def _loss(fn, size, thick, cotangent, **kwargs):
  return lambda k, ww: jnp.sum(fn(k, ww, size=size, thick=thick, **kwargs) * cotangent)


@pytest.mark.parametrize('jit', [False, True])
@pytest.mark.parametrize(
    'b,n,size,thick,coincident',
    [(2, 6, (24, 19), 2e-2, ()), (2, 2, (16, 16), 5e-3, ()), (1, 5, (20, 20), 1e-2, ((0, 2),))])
def test_gradients_match_reference(jit, b, n, size, thick, coincident):
  kp, w = _random_inputs(10 * n + b, b, n, coincident=coincident)
  kp, w = jnp.float32(kp), jnp.float32(w)
  cot = jnp.float32(np.random.default_rng(1).normal(size=(b,) + size))
  grad = jax.grad(_loss(link_heatmap, size, thick, cot, chunk=4), (0, 1))
  if jit:
    grad = jax.jit(grad)
  # Autodiff of the reference, always jitted (eager op-by-op autodiff gives the same numbers
  # and only costs test time); the op itself is checked both eagerly and under jit.
  grad_ref = jax.jit(jax.grad(_loss(link_heatmap_reference, size, thick, cot), (0, 1)))
  for got, want in zip(grad(kp, w), grad_ref(kp, w)):
    assert np.all(np.isfinite(got))
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-4 * np.abs(want).max())
  # Only the upper triangle of the weights is read, so only it gets gradient.
  _, grad_w = grad(kp, w)
  assert np.all(np.tril(np.asarray(grad_w)) == 0)


def _finite_difference_grads(loss, kp, w, eps=1e-6):
  """Central differences of a float64 loss w.r.t. every keypoint coordinate and upper weight."""
  grad_kp = np.zeros_like(kp)
  for idx in np.ndindex(kp.shape):
    plus, minus = kp.copy(), kp.copy()
    plus[idx] += eps
    minus[idx] -= eps
    grad_kp[idx] = float(loss(plus, w) - loss(minus, w)) / (2 * eps)
  grad_w = np.zeros_like(w)
  for i, j in zip(*np.triu_indices(w.shape[0], 1)):
    plus, minus = w.copy(), w.copy()
    plus[i, j] += eps
    minus[i, j] -= eps
    grad_w[i, j] = float(loss(kp, plus) - loss(kp, minus)) / (2 * eps)
  return grad_kp, grad_w


def test_gradients_match_finite_differences():
  """Custom backward vs float64 central differences, jitted and eager, in f64 and f32."""
  size, thick = (7, 6), 0.05
  kp, w = _random_inputs(3, 1, 4, spread=1.1)
  cot = np.random.default_rng(4).normal(size=(1,) + size)
  with jax.enable_x64(True):
    loss64 = _loss(link_heatmap, size, thick, jnp.asarray(cot), chunk=2)
    fd_kp, fd_w = _finite_difference_grads(jax.jit(loss64), kp, w)
    for grad in (jax.grad(loss64, (0, 1)), jax.jit(jax.grad(loss64, (0, 1)))):
      got_kp, got_w = grad(jnp.asarray(kp), jnp.asarray(w))
      assert got_kp.dtype == jnp.float64
      np.testing.assert_allclose(got_kp, fd_kp, rtol=1e-5, atol=1e-7)
      np.testing.assert_allclose(got_w, fd_w, rtol=1e-5, atol=1e-7)
  # The float32 path (the one that once went wrong under jit on CPU) against the same numbers.
  loss32 = _loss(link_heatmap, size, thick, jnp.float32(cot), chunk=2)
  for grad in (jax.grad(loss32, (0, 1)), jax.jit(jax.grad(loss32, (0, 1)))):
    got_kp, got_w = grad(jnp.float32(kp), jnp.float32(w))
    np.testing.assert_allclose(got_kp, fd_kp, rtol=0, atol=1e-4 * np.abs(fd_kp).max())
    np.testing.assert_allclose(got_w, fd_w, rtol=0, atol=1e-4 * np.abs(fd_w).max())


def test_coincident_endpoints_gradient_is_the_point_gradient():
  """A zero-length segment acts as a point: moving both endpoints together is finite-differenced."""
  size, thick = (9, 8), 0.05
  kp, w = _random_inputs(5, 1, 3, spread=0.8, coincident=((0, 1),))
  w[0, 2], w[1, 2] = 1e-3, 2e-3  # The point (0, 1) wins almost everywhere; no tied pairs.
  cot = np.random.default_rng(6).normal(size=(1,) + size)
  with jax.enable_x64(True):
    loss = _loss(link_heatmap, size, thick, jnp.asarray(cot))
    grad_kp, grad_w = jax.jit(jax.grad(loss, (0, 1)))(jnp.asarray(kp), jnp.asarray(w))
    assert np.all(np.isfinite(grad_kp)) and np.all(np.isfinite(grad_w))
    eps = 1e-6
    for c in range(2):
      shift = np.zeros_like(kp)
      shift[0, :2, c] = eps
      fd = (float(loss(kp + shift, w)) - float(loss(kp - shift, w))) / (2 * eps)
      np.testing.assert_allclose(grad_kp[0, 0, c] + grad_kp[0, 1, c], fd, rtol=1e-5)
    # Documented convention: the point's gradient goes to the first endpoint; same as autodiff.
    ref_kp, _ = jax.grad(_loss(link_heatmap_reference, size, thick, jnp.asarray(cot)), (0, 1))(
        jnp.asarray(kp), jnp.asarray(w))
    np.testing.assert_allclose(grad_kp, ref_kp, rtol=1e-9, atol=1e-12)


def test_tiny_segment_is_finite():
  """Endpoints 1e-20 apart (|e|^2 = 1e-40, subnormal in float32) act as a point, without NaN."""
  kp = np.array([[[1e-20, 0.0], [2e-20, 0.0], [0.5, 0.5]]])
  w = np.array([[0, 1.0, 0.1], [0, 0, 0.2], [0, 0, 0]])
  size, thick = (8, 9), 1e-2
  out = link_heatmap(jnp.float32(kp), jnp.float32(w), size=size, thick=thick)
  np.testing.assert_allclose(out, _numpy_heatmap(kp, w, size, thick), atol=1e-5)
  grads = jax.grad(lambda k, ww: jnp.sum(link_heatmap(k, ww, size=size, thick=thick)), (0, 1))(
      jnp.float32(kp), jnp.float32(w))
  assert all(np.all(np.isfinite(g)) for g in grads)


def test_all_zero_weights():
  """S = 0, keypoint gradient 0, and each pixel's nearest segment gets weight gradient e^(-d^2/t)."""
  size, thick, n = (10, 13), 0.02, 4
  kp, _ = _random_inputs(7, 2, n)
  w = np.zeros((n, n))
  # Positive cotangent so that per-pair sums are bounded by the tie-free and tie-inclusive sums.
  cot = np.random.default_rng(8).uniform(0.5, 1.5, size=(2,) + size)
  loss = _loss(link_heatmap, size, thick, jnp.float32(cot))
  assert np.all(link_heatmap(jnp.float32(kp), jnp.float32(w), size=size, thick=thick) == 0)
  grad_kp, grad_w = jax.jit(jax.grad(loss, (0, 1)))(jnp.float32(kp), jnp.float32(w))
  assert np.all(grad_kp == 0)
  px, py = _pixel_grid(*size)
  pairs = list(zip(*np.triu_indices(n, 1)))
  # Segments sharing an endpoint tie (up to rounding) wherever that endpoint is the nearest point
  # of both, so a tied pixel may go to either pair: bound each pair's sum from both sides.
  low, high, total = np.zeros((n, n)), np.zeros((n, n)), 0.0
  for b in range(2):
    d = np.stack([_point_segment_distance(px, py, kp[b, i], kp[b, j]) for i, j in pairs])
    d_min = d.min(axis=0)
    nearest = d <= d_min + 1e-6
    unique = nearest & (nearest.sum(axis=0) == 1)
    for k, (i, j) in enumerate(pairs):
      value = cot[b] * np.exp(-d[k]**2 / thick)
      low[i, j] += value[unique[k]].sum()
      high[i, j] += value[nearest[k]].sum()
    total += np.sum(cot[b] * np.exp(-d_min**2 / thick))
  grad_w = np.asarray(grad_w, np.float64)
  assert np.all(grad_w >= low - 1e-4) and np.all(grad_w <= high + 1e-4), (grad_w, low, high)
  np.testing.assert_allclose(grad_w.sum(), total, rtol=1e-5)


def test_some_zero_weights_match_reference():
  """Zero-weight pairs never win: no NaN, and forward and gradients equal the reference's."""
  size, thick = (14, 12), 5e-2
  kp, w = _random_inputs(9, 2, 5, zero_frac=0.5)
  w[0, 1] = 0.7  # At least one positive weight.
  kp, w = jnp.float32(kp), jnp.float32(w)
  cot = jnp.float32(np.random.default_rng(2).normal(size=(2,) + size))
  got = jax.jit(jax.grad(_loss(link_heatmap, size, thick, cot), (0, 1)))(kp, w)
  want = jax.grad(_loss(link_heatmap_reference, size, thick, cot), (0, 1))(kp, w)
  for g, r in zip(got, want):
    assert np.all(np.isfinite(g))
    np.testing.assert_allclose(g, r, rtol=0, atol=1e-4 * np.abs(r).max())


def test_vmap_matches_loop():
  size, thick = (11, 10), 1e-2
  rng = np.random.default_rng(11)
  kp = jnp.float32(rng.uniform(-1, 1, (3, 2, 4, 2)))
  w = jnp.float32(rng.uniform(0.1, 1, (3, 4, 4)))
  render = lambda k, ww: link_heatmap(k, ww, size=size, thick=thick)
  got = jax.vmap(render)(kp, w)
  for v in range(3):
    np.testing.assert_allclose(got[v], _numpy_heatmap(kp[v], w[v], size, thick), atol=1e-5)
  loss = lambda k, ww: jnp.sum(render(k, ww) ** 2)
  got_kp, got_w = jax.vmap(jax.grad(loss, (0, 1)))(kp, w)
  grad_ref = jax.jit(jax.grad(
      lambda k, ww: jnp.sum(link_heatmap_reference(k, ww, size=size, thick=thick) ** 2), (0, 1)))
  for v in range(3):
    want_kp, want_w = grad_ref(kp[v], w[v])
    np.testing.assert_allclose(got_kp[v], want_kp, atol=1e-4 * np.abs(want_kp).max())
    np.testing.assert_allclose(got_w[v], want_w, atol=1e-4 * np.abs(want_w).max())


def test_bfloat16_inputs():
  size, thick = (16, 12), 1e-2
  kp, w = _random_inputs(12, 2, 5)
  kp16, w16 = jnp.asarray(kp, jnp.bfloat16), jnp.asarray(w, jnp.bfloat16)
  out = link_heatmap(kp16, w16, size=size, thick=thick)
  assert out.dtype == jnp.bfloat16
  # Distances are computed in float32 from the bf16-rounded inputs; only the output is rounded.
  expected = _numpy_heatmap(np.float64(kp16.astype(jnp.float32)),
                            np.float64(w16.astype(jnp.float32)), size, thick)
  np.testing.assert_allclose(np.float32(out), expected, rtol=1e-2, atol=1e-3)
  grad_kp, grad_w = jax.jit(jax.grad(
      lambda k, ww: jnp.sum(link_heatmap(k, ww, size=size, thick=thick).astype(jnp.float32)),
      (0, 1)))(kp16, w16)
  assert grad_kp.dtype == jnp.bfloat16 and grad_w.dtype == jnp.bfloat16
  want_kp, want_w = jax.grad(
      lambda k, ww: jnp.sum(link_heatmap_reference(k, ww, size=size, thick=thick)),
      (0, 1))(kp16.astype(jnp.float32), w16.astype(jnp.float32))
  np.testing.assert_allclose(np.float32(grad_kp), want_kp, atol=2e-2 * np.abs(want_kp).max())
  np.testing.assert_allclose(np.float32(grad_w), want_w, atol=2e-2 * np.abs(want_w).max())


def test_memory_is_a_tenth_of_reference():
  """Compiled forward+backward temp memory at B=64, N=16, 128x128 (no allocation happens)."""
  kp = jax.ShapeDtypeStruct((64, 16, 2), jnp.float32)
  w = jax.ShapeDtypeStruct((16, 16), jnp.float32)

  def temp_bytes(fn):
    grad = jax.grad(lambda k, ww: jnp.sum(fn(k, ww, size=(128, 128), thick=5e-4)), (0, 1))
    return jax.jit(grad).lower(kp, w).compile().memory_analysis().temp_size_in_bytes

  chunked, reference = temp_bytes(link_heatmap), temp_bytes(link_heatmap_reference)
  assert chunked < reference / 10, (chunked, reference)
  # O(B*H*W): well under a per-pair stack (64 * 120 * 128 * 128 * 4 bytes = 480 MiB).
  assert chunked < 64 * 128 * 128 * 4 * 16


@pytest.mark.parametrize(
    'kp_shape,w_shape,kwargs,error',
    [((2, 4, 3), (4, 4), {}, 'keypoints must have shape'),
     ((2, 4, 2), (3, 3), {}, 'weights must have shape'),
     ((2, 1, 2), (1, 1), {}, 'at least 2 keypoints'),
     ((2, 4, 2), (4, 4), {'size': (0, 8)}, 'size must be positive'),
     ((2, 4, 2), (4, 4), {'thick': 0.0}, 'thick must be > 0'),
     ((2, 4, 2), (4, 4), {'chunk': 0}, 'chunk must be >= 1')])
def test_bad_inputs_raise(kp_shape, w_shape, kwargs, error):
  args = {'size': (8, 8), 'thick': 1e-3} | kwargs
  with pytest.raises(ValueError, match=error):
    link_heatmap(jnp.zeros(kp_shape), jnp.ones(w_shape), **args)


def test_traced_thick_raises():
  with pytest.raises(TypeError, match='thick must be a Python float'):
    jax.jit(lambda t: link_heatmap(jnp.zeros((1, 2, 2)), jnp.ones((2, 2)), size=(4, 4), thick=t))(
        0.1)
