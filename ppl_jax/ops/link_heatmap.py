"""Link heatmaps: the max over keypoint pairs of weighted Gaussian segment maps.

S[b, y, x] = max_{i<j} w_ij * exp(-d(p_yx, seg(kp_bi, kp_bj))^2 / thick), with d the exact
Euclidean distance from the pixel centre p_yx to the segment. Coordinates are normalised to
[-1, 1] as (x, y), x along width; pixel column c has centre x = -1 + (2c + 1) / W and row r has
centre y = -1 + (2r + 1) / H (half-pixel convention, as in `jax.image.resize`).

`link_heatmap` never materialises the [B, P, H, W] stack of the P = N(N-1)/2 pair maps: it scans
over chunks of pairs keeping, per pixel, the running max of the log-score
log(w_ij) - d^2 / thick and the index of the pair that attains it, and exponentiates once at the
end. Its backward pass (a `jax.custom_vjp`) recomputes only the winning pair's distance at each
pixel and scatter-adds the gradient into the pair's two endpoints and its weight, so forward and
backward memory are O(B*H*W) instead of O(B*P*H*W). JAX's autodiff cannot give this: the running
max would keep (or recompute) every chunk's intermediates.

`link_heatmap_reference` is the plain materialising version (autodiff through `jnp.max`), kept for
tests and benchmarks only.

Gradient conventions of `link_heatmap` (weights must be >= 0; negative weights count as 0):
- Each pixel sends its gradient to its winning pair only. With exact ties in the log-score, the
  lowest pair index (in `np.triu_indices` order) wins; the reference's `jax.grad` of `jnp.max`
  instead splits the gradient evenly among ties, so the two agree whenever there are no ties.
- Only the upper triangle (i < j) of `weights` is read, so only it receives gradient.
- Zero weights: a pair with w_ij = 0 has log-score -inf and never wins against a positive-weight
  pair, so its weight gradient is 0 (the exact one-sided derivative). If *all* weights are zero,
  S = 0 everywhere and each pixel's winner is its nearest segment, whose weight gets gradient
  exp(-d^2 / thick) (the derivative of S as that weight grows from 0); keypoints get 0. The
  reference instead splits the gradient over all tied zero values.
- A segment of zero length (coincident endpoints) is a point: d is the distance to it; its
  keypoint gradient goes to the first endpoint. No NaN in forward or backward.
- Where exp(-d^2/thick) underflows to 0 in float32 the reference ties every pair at 0 and splits
  the gradient among them; here the best log-score wins, whose gradients are then also 0.
"""

import functools
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

# Pairs per scan step. Each step is one fused elementwise loop over B*H*W pixels that evaluates
# `chunk` pairs and reads/writes the running max once. On a 2-core CPU at B=64, N=16, 128x128,
# chunks of 4 to 32 ran equally fast (forward 11.5-11.8 ms) and chunk 1 was 40% slower; 8 keeps
# the unrolled step (and compile time) small.
DEFAULT_CHUNK = 8


def _check_inputs(keypoints, weights, size, thick, chunk):
  """Validates shapes and static arguments; returns (H, W, thick, chunk) as Python numbers."""
  if keypoints.ndim != 3 or keypoints.shape[-1] != 2:
    raise ValueError(
        f'link_heatmap: keypoints must have shape [B, N, 2] (x, y), got {keypoints.shape}.')
  n = keypoints.shape[1]
  if n < 2:
    raise ValueError(f'link_heatmap: need at least 2 keypoints to form a link, got N={n}.')
  if weights.shape != (n, n):
    raise ValueError(
        f'link_heatmap: weights must have shape [N, N] = [{n}, {n}] to match keypoints '
        f'{keypoints.shape}, got {weights.shape}.')
  if not (jnp.issubdtype(keypoints.dtype, jnp.floating)
          and jnp.issubdtype(weights.dtype, jnp.floating)):
    raise TypeError(
        f'link_heatmap: keypoints and weights must be floating point, got {keypoints.dtype} '
        f'and {weights.dtype}.')
  if not isinstance(size, Sequence) or len(size) != 2:
    raise ValueError(f'link_heatmap: size must be (H, W), got {size!r}.')
  h, w = (int(s) for s in size)
  if h < 1 or w < 1:
    raise ValueError(f'link_heatmap: size must be positive (H, W), got {size!r}.')
  try:
    thick = float(thick)
  except (TypeError, jax.errors.ConcretizationTypeError) as e:
    raise TypeError(
        'link_heatmap: thick must be a Python float (a static config value such as '
        f'config.model.thick), not a traced array; got {thick!r}.') from e
  if not thick > 0:
    raise ValueError(f'link_heatmap: thick must be > 0, got {thick}.')
  chunk = int(chunk)
  if chunk < 1:
    raise ValueError(f'link_heatmap: chunk must be >= 1, got {chunk}.')
  return h, w, thick, chunk


def _compute_dtype(*arrays):
  """At least float32 (bf16/f16 inputs are computed in f32; f64 stays f64 under x64)."""
  return jnp.result_type(jnp.float32, *(a.dtype for a in arrays))


def _pixel_centres(h, w, dtype):
  """Pixel-centre coordinates on the [-1, 1] grid: (x [W], y [H])."""
  # (2c + 1 - W) is an exact integer, so each centre is a single correctly rounded division.
  xs = (2.0 * jnp.arange(w, dtype=dtype) + 1.0 - w) / w
  ys = (2.0 * jnp.arange(h, dtype=dtype) + 1.0 - h) / h
  return xs, ys


def _pairs(n):
  """Upper-triangle pair endpoints (i [P], j [P]) with i < j, in np.triu_indices order."""
  i, j = np.triu_indices(n, k=1)
  return i.astype(np.int32), j.astype(np.int32)


def _log_weights(weights, i, j):
  """Log pair weights [P]; all-zero weights give uniform 0 so the nearest segment wins."""
  w = jnp.maximum(weights[i, j], 0)
  all_zero = jnp.max(w) <= 0
  logw = jnp.where(all_zero, 0.0, jnp.log(w))
  return logw, all_zero


def _segment_d2_and_t(px, py, ax, ay, ex, ey, inv_len2):
  """Squared distance from points p to segments a + t e, t in [0, 1]; returns (d2, t, rx, ry).

  (rx, ry) = p - (a + t e) is the residual to the closest point. inv_len2 is 1/|e|^2, or 0 for a
  zero-length segment (then t = 0 and d is the distance to a).
  """
  dx = px - ax
  dy = py - ay
  t = jnp.clip((dx * ex + dy * ey) * inv_len2, 0.0, 1.0)
  rx = dx - t * ex
  ry = dy - t * ey
  return rx * rx + ry * ry, t, rx, ry


def _pair_geometry(keypoints, i, j):
  """Per-(batch, pair) segment start a, direction e and 1/|e|^2 (0 for zero length): [B, P] each."""
  a = keypoints[:, i]
  e = keypoints[:, j] - a
  len2 = e[..., 0] ** 2 + e[..., 1] ** 2
  # Below the smallest normal number 1/len2 could overflow to inf (and 0 * inf = NaN); such a
  # segment (shorter than ~1e-19 in f32) is treated as its first endpoint.
  long_enough = len2 >= jnp.finfo(len2.dtype).tiny
  inv_len2 = jnp.where(long_enough, 1.0 / jnp.where(long_enough, len2, 1.0), 0.0)
  return a[..., 0], a[..., 1], e[..., 0], e[..., 1], inv_len2


def _argmax_pairs(keypoints, logw, h, w, thick, chunk):
  """Running max over pair chunks of logw - d^2/thick: (best log-score, winning pair) [B, H, W]."""
  dtype = keypoints.dtype
  b = keypoints.shape[0]
  i, j = _pairs(keypoints.shape[1])
  p = i.shape[0]
  chunk = min(chunk, p)
  n_chunks = -(-p // chunk)
  pad = n_chunks * chunk - p
  geometry = _pair_geometry(keypoints, i, j)
  # Padding pairs have log-weight -inf, so they never beat a real pair (whose log-scores are
  # finite or -inf, and ties keep the earlier, real pair).
  geometry = [jnp.pad(g, ((0, 0), (0, pad))) for g in geometry]
  logw = jnp.pad(logw, (0, pad), constant_values=-jnp.inf)
  # [n_chunks, chunk, B] per geometry term, [n_chunks, chunk] for the log-weights.
  xs = tuple(g.T.reshape(n_chunks, chunk, b) for g in geometry) + (
      logw.reshape(n_chunks, chunk), jnp.arange(n_chunks * chunk, dtype=jnp.int32).reshape(
          n_chunks, chunk))
  px, py = _pixel_centres(h, w, dtype)
  px = px[None, None, :]
  py = py[None, :, None]
  inv_thick = 1.0 / thick

  def step(carry, chunk_terms):
    best, best_idx = carry
    ax, ay, ex, ey, inv_len2, lw, idx = chunk_terms
    # A Python loop (unrolled), not a reduction over a [B, chunk, H, W] array: XLA fuses the
    # whole chunk into one elementwise loop over pixels with no per-pair intermediates.
    for c in range(chunk):
      d2, _, _, _ = _segment_d2_and_t(
          px, py, ax[c][:, None, None], ay[c][:, None, None], ex[c][:, None, None],
          ey[c][:, None, None], inv_len2[c][:, None, None])
      score = lw[c] - d2 * inv_thick
      take = score > best
      best = jnp.where(take, score, best)
      best_idx = jnp.where(take, idx[c], best_idx)
    return (best, best_idx), None

  init = (jnp.full((b, h, w), -jnp.inf, dtype), jnp.zeros((b, h, w), jnp.int32))
  (best, best_idx), _ = jax.lax.scan(step, init, xs)
  return best, best_idx


# The forward and backward bodies are jitted so that eager calls reuse one compiled program
# instead of re-tracing the scan (whose body is a fresh closure) on every call.
@functools.partial(jax.jit, static_argnums=(2, 3, 4, 5))
def _forward(keypoints, weights, h, w, thick, chunk):
  """Heatmap [B, H, W] (promoted input dtype) and winning pair index [B, H, W] int32."""
  dtype = _compute_dtype(keypoints, weights)
  i, j = _pairs(keypoints.shape[1])
  logw, all_zero = _log_weights(weights.astype(dtype), i, j)
  best, best_idx = _argmax_pairs(keypoints.astype(dtype), logw, h, w, thick, chunk)
  heatmap = jnp.where(all_zero, 0.0, jnp.exp(best))
  return heatmap.astype(jnp.result_type(keypoints.dtype, weights.dtype)), best_idx


@functools.partial(jax.jit, static_argnums=(0, 1, 2))
def _backward(h, w, thick, keypoints, weights, best_idx, g):
  """Gradients w.r.t. keypoints [B, N, 2] and weights [N, N] through each pixel's winning pair."""
  dtype = _compute_dtype(keypoints, weights)
  b, n, _ = keypoints.shape
  i, j = _pairs(n)
  p = i.shape[0]
  kp = keypoints.astype(dtype)
  logw, all_zero = _log_weights(weights.astype(dtype), i, j)
  # Gather each pixel's winning segment: [B, H, W] per term.
  pair_terms = jnp.stack(_pair_geometry(kp, i, j) + (jnp.broadcast_to(logw, (b, p)),), axis=-1)
  flat_idx = (jnp.arange(b, dtype=jnp.int32)[:, None, None] * p + best_idx).reshape(-1)
  won = pair_terms.reshape(b * p, 6)[flat_idx].reshape(b, h, w, 6)
  ax, ay, ex, ey, inv_len2, lw = (won[..., k] for k in range(6))
  px, py = _pixel_centres(h, w, dtype)
  d2, t, rx, ry = _segment_d2_and_t(px[None, None, :], py[None, :, None], ax, ay, ex, ey, inv_len2)
  g = g.astype(dtype)
  # dS/dw_k = exp(-d^2/thick) (also when w_k = 0); dS/dd2 = -S/thick.
  grad_w = g * jnp.exp(-d2 / thick)
  heatmap = jnp.where(all_zero, 0.0, jnp.exp(lw - d2 / thick))
  # Danskin: d2 = min_t |p - a - t e|^2, so at the optimal t the gradient w.r.t. the endpoints is
  # dd2/da = -2 (1 - t) r and dd2/db = -2 t r, with r = p - (a + t e) (t = 0 for a point).
  coef = g * heatmap * (2.0 / thick)
  per_pixel = jnp.stack(
      [grad_w, coef * (1 - t) * rx, coef * (1 - t) * ry, coef * t * rx, coef * t * ry], axis=-1)
  # Sum over the pixels won by each (batch, pair): one scatter of B*H*W rows into [B*P, 5].
  per_pair = jax.ops.segment_sum(
      per_pixel.reshape(-1, 5), flat_idx, num_segments=b * p).reshape(b, p, 5)
  grad_weights = jnp.zeros((n, n), dtype).at[i, j].set(per_pair[..., 0].sum(0))
  grad_keypoints = (jnp.zeros((b, n, 2), dtype)
                    .at[:, i].add(per_pair[..., 1:3])
                    .at[:, j].add(per_pair[..., 3:5]))
  return grad_keypoints.astype(keypoints.dtype), grad_weights.astype(weights.dtype)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4, 5))
def _link_heatmap(keypoints, weights, h, w, thick, chunk):
  return _forward(keypoints, weights, h, w, thick, chunk)[0]


def _link_heatmap_fwd(keypoints, weights, h, w, thick, chunk):
  heatmap, best_idx = _forward(keypoints, weights, h, w, thick, chunk)
  return heatmap, (keypoints, weights, best_idx)


def _link_heatmap_bwd(h, w, thick, chunk, residuals, g):
  del chunk  # The backward touches only the winning pair per pixel.
  return _backward(h, w, thick, *residuals, g)


_link_heatmap.defvjp(_link_heatmap_fwd, _link_heatmap_bwd)


def link_heatmap(keypoints, weights, *, size, thick, chunk=DEFAULT_CHUNK):
  """Renders link heatmaps without materialising per-pair maps (memory O(B*H*W)).

  Args:
    keypoints: [B, N, 2] (x, y) in normalised coordinates ([-1, 1] spans the image; points
      outside are allowed), N >= 2.
    weights: [N, N] link weights >= 0; only the upper triangle i < j is read.
    size: (H, W) output size in pixels.
    thick: Gaussian width sigma^2 in squared normalised units (paper 5e-4), a Python float.
    chunk: pairs evaluated per scan step (speed/compile-time trade-off; no effect on results).

  Returns:
    S [B, H, W] = max_{i<j} w_ij exp(-d^2 / thick), dtype of keypoints/weights promoted
    (computed in at least float32). Differentiable in keypoints and weights with a custom
    backward that sends each pixel's gradient to its winning pair (see module docstring).
  """
  keypoints = jnp.asarray(keypoints)
  weights = jnp.asarray(weights)
  h, w, thick, chunk = _check_inputs(keypoints, weights, size, thick, chunk)
  return _link_heatmap(keypoints, weights, h, w, thick, chunk)


def link_heatmap_reference(keypoints, weights, *, size, thick):
  """Materialising reference of `link_heatmap` (B*P*H*W memory; tests and benchmarks only).

  Same arguments and result; gradients by plain autodiff through `jnp.max` (split among ties).
  """
  keypoints = jnp.asarray(keypoints)
  weights = jnp.asarray(weights)
  h, w, thick, _ = _check_inputs(keypoints, weights, size, thick, 1)
  dtype = _compute_dtype(keypoints, weights)
  kp = keypoints.astype(dtype)
  i, j = _pairs(kp.shape[1])
  ax, ay, ex, ey, inv_len2 = (g[:, :, None, None] for g in _pair_geometry(kp, i, j))
  px, py = _pixel_centres(h, w, dtype)
  d2, _, _, _ = _segment_d2_and_t(px[None, None, None, :], py[None, None, :, None], ax, ay, ex,
                                  ey, inv_len2)
  maps = weights.astype(dtype)[i, j][None, :, None, None] * jnp.exp(-d2 / thick)
  return jnp.max(maps, axis=1).astype(jnp.result_type(keypoints.dtype, weights.dtype))
