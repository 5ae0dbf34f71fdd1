"""PPL objective terms against hand-computed tiny cases and numpy re-derivations."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from ppl_jax.losses.objective import (boundary_loss, commitment_loss, keypoint_recon_loss,
                                      link_loss, ppl_objective, spring_loss, tokens_used)


def test_boundary_loss_hand_computed():
  keypoints = jnp.array([
      [[0.5, -1.5], [2.0, 0.0], [1.0, -1.0]],    # 1.5 + 2.0 (|c| == 1 is inside)
      [[-3.0, 1.25], [0.0, 0.0], [0.99, 0.1]],   # 3.0 + 1.25
  ])
  np.testing.assert_allclose(boundary_loss(keypoints), (3.5 + 4.25) / 2, rtol=1e-6)


def test_link_loss_hand_computed():
  prior = jnp.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
  # Batch 0: point 1 moved to (2, 0): l01 1 -> 2, l12 sqrt2 -> sqrt5, l02 unchanged.
  # Batch 1: everything scaled by 0.5: every length halves.
  keypoints = jnp.stack([jnp.array([[0.0, 0.0], [2.0, 0.0], [0.0, 1.0]]), 0.5 * prior])
  w = jnp.array([[0.0, 2.0, 3.0], [2.0, 0.0, 5.0], [3.0, 5.0, 0.0]])
  s2, s5 = np.sqrt(2.0), np.sqrt(5.0)
  batch0 = 2 * (2.0 * 1.0 + 5.0 * (s5 - s2))                   # ordered pairs: twice each link
  batch1 = 2 * (2.0 * 0.5 + 3.0 * 0.5 + 5.0 * s2 / 2)
  np.testing.assert_allclose(link_loss(prior, keypoints, w), (batch0 + batch1) / 2, rtol=1e-6)


def test_link_loss_gradient_finite_for_coincident_points():
  prior = jnp.array([[0.0, 0.0], [0.0, 0.0], [1.0, 1.0]])
  keypoints = jnp.array([[[0.3, 0.3], [0.3, 0.3], [0.0, 1.0]]])
  w = jnp.ones((3, 3)) - jnp.eye(3)
  grads = jax.grad(link_loss, argnums=(0, 1, 2))(prior, keypoints, w)
  for g in grads:
    assert np.all(np.isfinite(g))


def test_link_loss_gradient_matches_finite_differences():
  rng = np.random.default_rng(0)
  prior = rng.uniform(-1, 1, (4, 2))
  keypoints = rng.uniform(-1, 1, (2, 4, 2))
  w = rng.uniform(0, 1, (4, 4))
  w = (w + w.T) * (1 - np.eye(4))
  f = lambda kp: link_loss(jnp.asarray(prior), kp, jnp.asarray(w))
  grad = np.asarray(jax.grad(f)(jnp.asarray(keypoints, jnp.float32)))
  # Central differences in float64 numpy (an independent re-derivation of the loss).
  def np_loss(kp):
    d = lambda p: np.linalg.norm(p[..., :, None, :] - p[..., None, :, :], axis=-1)
    return np.mean(np.sum(w * np.abs(d(prior)[None] - d(kp)), axis=(1, 2)))
  h = 1e-6
  num = np.zeros_like(keypoints)
  for idx in np.ndindex(keypoints.shape):
    e = np.zeros_like(keypoints)
    e[idx] = h
    num[idx] = (np_loss(keypoints + e) - np_loss(keypoints - e)) / (2 * h)
  np.testing.assert_allclose(grad, num, rtol=1e-3, atol=1e-4)


def test_reconstruction_and_commitment_mse():
  rng = np.random.default_rng(1)
  recon, target = rng.normal(size=(2, 2, 3, 2, 2)).astype(np.float32)
  tokens, quantized = rng.normal(size=(2, 2, 4, 5)).astype(np.float32)
  np.testing.assert_allclose(keypoint_recon_loss(recon, target),
                             np.mean((recon.astype(np.float64) - target) ** 2), rtol=1e-5)
  np.testing.assert_allclose(commitment_loss(tokens, quantized),
                             np.mean((tokens.astype(np.float64) - quantized) ** 2), rtol=1e-5)
  # Stop-gradients: no gradient into the targets T' and G'.
  g_target = jax.grad(lambda t: keypoint_recon_loss(recon, t))(target)
  g_quant = jax.grad(lambda q: commitment_loss(tokens, q))(quantized)
  np.testing.assert_array_equal(g_target, 0)
  np.testing.assert_array_equal(g_quant, 0)


def test_tokens_used_counts_distinct_indices():
  indices = jnp.array([[0, 1], [0, 2], [3, 1], [0, 1]])    # bank 0: {0, 3}; bank 1: {1, 2}
  np.testing.assert_allclose(tokens_used(indices), 2.0)


def test_ppl_objective_weights_terms():
  rng = np.random.default_rng(2)
  b, n, m, d, s = 2, 4, 3, 5, 8
  outputs = {
      'prior': rng.uniform(-1, 1, (n, 2)),
      'keypoints': rng.uniform(-1.5, 1.5, (b, n, 2)),
      'keypoints_recon': rng.uniform(-1, 1, (b, n, 2)),
      'connectivity': rng.uniform(0, 1, (n, n)) * (1 - np.eye(n)),
      'tokens': rng.normal(size=(b, m, d)),
      'quantized': rng.normal(size=(b, m, d)),
      'indices': rng.integers(0, 4, (b, m)),
      'recon': rng.uniform(-1, 1, (b, s, s, 3)),
  }
  outputs = {k: jnp.asarray(v, jnp.int32 if k == 'indices' else jnp.float32)
             for k, v in outputs.items()}
  image = jnp.asarray(rng.uniform(-1, 1, (b, s, s, 3)), jnp.float32)
  l1 = lambda r, t: (jnp.mean(jnp.abs(r - t)), {'l1': jnp.mean(jnp.abs(r - t))})
  cfg = ml_collections.ConfigDict(dict(boundary_weight=2.0, link_weight=0.5,
                                       keypoint_recon_weight=100.0, commitment_weight=3.0,
                                       separation_weight=4.0, separation_margin=0.8,
                                       spring_weight=0.7))
  loss, metrics = ppl_objective(outputs, image, cfg, l1)
  o = {k: np.asarray(v, np.float64) for k, v in outputs.items()}
  kp = o['keypoints']
  l_ir = np.mean(np.abs(o['recon'] - np.asarray(image)))
  l_b = np.mean(np.sum(np.where(np.abs(kp) > 1, np.abs(kp), 0), axis=(1, 2)))
  dist = lambda p: np.linalg.norm(p[..., :, None, :] - p[..., None, :, :], axis=-1)
  l_l = np.mean(np.sum(o['connectivity'] * np.abs(dist(o['prior'])[None] - dist(kp)), axis=(1, 2)))
  l_kr = np.mean((o['keypoints_recon'] - kp) ** 2)
  l_c = np.mean((o['tokens'] - o['quantized']) ** 2)
  d = dist(kp)
  l_sep = np.mean([sum(max(0.0, 0.8 - d[f, i, j]) ** 2 for i in range(d.shape[1])
                       for j in range(i + 1, d.shape[1])) for f in range(len(d))])
  assert l_sep > 0
  l_spr = np.mean([sum(o['connectivity'][i, j] * np.sum((kp[f, i] - kp[f, j]) ** 2)
                       for i in range(n) for j in range(n)) for f in range(b)])
  expected = (l_ir + 2.0 * l_b + 0.5 * l_l + 100.0 * l_kr + 3.0 * l_c + 4.0 * l_sep
              + 0.7 * l_spr)
  np.testing.assert_allclose(loss, expected, rtol=1e-5)
  for key, value in [('image_loss', l_ir), ('boundary_loss', l_b), ('link_loss', l_l),
                     ('keypoint_recon_loss', l_kr), ('commitment_loss', l_c),
                     ('separation_loss', l_sep), ('spring_loss', l_spr),
                     ('image/l1', l_ir)]:
    np.testing.assert_allclose(metrics[key], value, rtol=1e-5, err_msg=key)
  assert all(v.shape == () and v.dtype == jnp.float32 for v in metrics.values())


def test_spring_loss_prefers_a_chain_through_the_middle_joint():
  # Joints a, b, c on a line at x = 0, 1, 3: one link a-c (length 3) costs 2 * 9 (both
  # ordered pairs); the chain a-b, b-c costs 2 * (1 + 4).
  points = jnp.array([[[0.0, 0.0], [1.0, 0.0], [3.0, 0.0]]])
  long_link = jnp.zeros((3, 3)).at[0, 2].set(1.0).at[2, 0].set(1.0)
  chain = jnp.zeros((3, 3)).at[0, 1].set(1.0).at[1, 0].set(1.0).at[1, 2].set(1.0).at[2, 1].set(1.0)
  np.testing.assert_allclose(spring_loss(points, long_link), 18.0, rtol=1e-6)
  np.testing.assert_allclose(spring_loss(points, chain), 10.0, rtol=1e-6)
  # Gradient into W is the squared lengths; into the keypoints 2 * sum_j (w_ij + w_ji)(T_i - T_j).
  g_w = jax.grad(lambda w: spring_loss(points, w))(chain)
  np.testing.assert_allclose(g_w, [[0, 1, 9], [1, 0, 4], [9, 4, 0]], rtol=1e-6)
  g_t = jax.grad(lambda t: spring_loss(t, chain))(points)
  np.testing.assert_allclose(g_t[0, :, 0], [-4.0, 4.0 * (1 - 0) + 4.0 * (1 - 3), 8.0], rtol=1e-6)
