"""The composed PPL model: every Table 3 prior variant, both contexts, stop-gradients, priors."""

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ppl_jax.config import default_config
from ppl_jax.losses.objective import (boundary_loss, commitment_loss, keypoint_recon_loss,
                                      ppl_objective)
from ppl_jax.models import build_model
from ppl_jax.ops.link_heatmap import link_heatmap_reference
from ppl_jax.models.priors import (EDGE_LOGIT, OFF_EDGE_LOGIT, Connectivity, KeypointPrior,
                                   template)

SIZE, BATCH = 32, 2
TEMPLATE = {16: 'human16', 10: 'quadruped10'}


def l1_image_loss(recon, target):
  loss = jnp.mean(jnp.abs(recon - target))
  return loss, {'l1': loss}


def tiny_config(num_parts=16, context='reference_frame', keypoint_prior='memory',
                connectivity_prior='random', **model_overrides):
  config = default_config()
  config.data.image_size = SIZE
  m = config.model
  m.num_parts = num_parts
  m.context = context
  m.keypoint_prior = keypoint_prior
  m.connectivity_prior = connectivity_prior
  m.prior_template = TEMPLATE.get(num_parts, 'ring')
  m.encoder_channels = (4, 8, 8)
  m.encoder_out_channels = 8
  m.decoder_channels = (4, 8)
  m.embed_dim = 8
  m.point_embed_dim = 8     # optional field (build_model defaults it to 256)
  m.memory_banks, m.memory_tokens, m.memory_dim = 3, 4, 8
  m.mixer_enc_blocks = 1
  m.mixer_dec_dim = 8
  m.thick = 1e-2            # wide links, so the 32 px heatmap is not all zeros
  m.update(model_overrides)
  return config


def images(seed=0):
  rng = np.random.default_rng(seed)
  shape = (2, BATCH, SIZE, SIZE, 3)
  return tuple(jnp.asarray(rng.uniform(-1, 1, shape), jnp.float32))


def init(config, seed=1):
  model = build_model(config)
  image, reference = images()
  # rbg keys: threefry's random-bits kernels dominate CPU compile time at these tiny sizes.
  variables = model.init(jax.random.key(seed, impl='rbg'), image, reference, train=False)
  return model, variables, image, reference


VARIANTS = [(16, context, kp, conn)
            for context in ('reference_frame', 'masked_self')
            for kp in ('memory', 'predefined', 'random')
            for conn in ('random', 'predefined')]
# N = 4 and 10 are covered by the gradient tests, N = 32 by the bfloat16 test (each distinct N
# costs a fresh compilation).


def check_outputs(out, config):
  """Output shapes, Theta == identity and T' == T bit for bit (untrained), prior init."""
  n, m, d = config.model.num_parts, config.model.memory_banks, config.model.memory_dim
  expected = {'prior': (n, 2), 'theta': (BATCH, n, 2, 3), 'keypoints': (BATCH, n, 2),
              'connectivity': (n, n), 'heatmap': (BATCH, SIZE, SIZE),
              'recon': (BATCH, SIZE, SIZE, 3), 'tokens': (BATCH, m, d),
              'quantized': (BATCH, m, d), 'keypoints_recon': (BATCH, n, 2),
              'indices': (BATCH, m)}
  assert {k: v.shape for k, v in out.items()} == expected
  identity = np.broadcast_to(np.array([[1.0, 0, 0], [0, 1, 0]]), (BATCH, n, 2, 3))
  np.testing.assert_array_equal(out['theta'], identity)
  np.testing.assert_array_equal(out['keypoints'], np.broadcast_to(out['prior'], (BATCH, n, 2)))
  if config.model.keypoint_prior == 'predefined':
    np.testing.assert_array_equal(out['prior'], template(config.model.prior_template, n)[0])
  if config.model.keypoint_prior == 'random':
    assert np.all(np.abs(out['prior']) <= 0.5)


def check_params(params, config):
  n = config.model.num_parts
  assert 'memory' not in params
  assert ('keypoint_prior' in params) == (config.model.keypoint_prior != 'memory')
  assert ('alpha' in params) == (config.model.context == 'masked_self')
  if 'alpha' in params:
    assert params['alpha'].shape == () and float(params['alpha']) == 1.0
  assert params['connectivity']['logits'].shape == (n, n)


@pytest.mark.parametrize('num_parts,context,keypoint_prior,connectivity_prior', VARIANTS)
def test_variant_shapes_identity_start_and_finite_loss(num_parts, context, keypoint_prior,
                                                       connectivity_prior):
  config = tiny_config(num_parts, context, keypoint_prior, connectivity_prior)
  model, variables, image, reference = init(config)
  check_params(variables['params'], config)
  out, state = model.apply(variables, image, reference, train=True,
                           mutable=['batch_stats', 'memory'])
  check_outputs(out, config)
  loss, metrics = ppl_objective(out, image, config.loss, l1_image_loss)
  assert np.isfinite(loss)
  assert all(np.isfinite(v) for v in metrics.values())
  # A training apply takes one EMA step; an eval apply leaves the memory untouched.
  assert not np.allclose(state['memory']['memory']['ema_count'],
                         variables['memory']['memory']['ema_count'])
  _, eval_state = model.apply(variables, image, reference, train=False, mutable=['memory'])
  jax.tree.map(np.testing.assert_array_equal, eval_state['memory'], variables['memory'])


def _norms(tree):
  flat = flax.traverse_util.flatten_dict(tree, sep='/')
  return {k: float(jnp.max(jnp.abs(v))) for k, v in flat.items()}


def _max_under(norms, prefix):
  values = [v for k, v in norms.items() if k.startswith(prefix)]
  assert values, f'no parameters under {prefix}'
  return max(values)


@pytest.mark.parametrize('num_parts,context,keypoint_prior,connectivity_prior', [
    (4, 'masked_self', 'memory', 'random'), (10, 'reference_frame', 'predefined', 'predefined')])
def test_jit_gradients_and_stop_gradients(num_parts, context, keypoint_prior, connectivity_prior):
  config = tiny_config(num_parts, context, keypoint_prior, connectivity_prior)
  config.loss.link_weight = 1.0
  model, variables, image, reference = init(config)
  check_params(variables['params'], config)

  def terms(params):
    out, _ = model.apply({**variables, 'params': params}, image, reference, train=True,
                         mutable=['batch_stats', 'memory'])
    total, _ = ppl_objective(out, image, config.loss, l1_image_loss)
    values = jnp.stack([total, l1_image_loss(out['recon'], image)[0],
                        keypoint_recon_loss(out['keypoints_recon'], out['keypoints']),
                        commitment_loss(out['tokens'], out['quantized']),
                        boundary_loss(out['keypoints'] * 3.0)])
    return values, out

  @jax.jit
  def values_and_jacobian(params):
    values, out = terms(params)
    return values, out, jax.jacrev(lambda p: terms(p)[0])(params)

  values, out, jac = values_and_jacobian(variables['params'])
  check_outputs(out, config)
  assert np.all(np.isfinite(values))
  grads = [_norms(jax.tree.map(lambda g, i=i: g[i], jac)) for i in range(5)]
  total, image_term, kr_term, commit_term, boundary_term = grads
  assert all(np.isfinite(v) for v in total.values())
  # Image reconstruction: reaches decoder, connectivity, the affine head; never the memory path.
  assert _max_under(image_term, 'mix_enc') == 0 and _max_under(image_term, 'mix_dec') == 0
  assert _max_under(image_term, 'decoder') > 0
  assert _max_under(image_term, 'connectivity') > 0
  assert _max_under(image_term, 'encoder/affine_out') > 0
  # Keypoint-configuration reconstruction: only MIX_enc / MIX_dec (T' is stop-gradient).
  for prefix in ('encoder', 'decoder', 'connectivity'):
    assert _max_under(kr_term, prefix) == 0, prefix
  assert _max_under(kr_term, 'mix_dec') > 0
  assert _max_under(kr_term, 'mix_enc') > 0          # through the straight-through estimator
  # Commitment: only MIX_enc.
  for prefix in ('encoder', 'decoder', 'connectivity', 'mix_dec'):
    assert _max_under(commit_term, prefix) == 0, prefix
  assert _max_under(commit_term, 'mix_enc') > 0
  # Boundary (keypoints scaled out of range): the encoder, not the memory path.
  assert _max_under(boundary_term, 'encoder/affine_out') > 0
  assert _max_under(boundary_term, 'mix_dec') == 0
  if context == 'masked_self':
    assert image_term['alpha'] > 0
  if keypoint_prior == 'predefined':
    assert image_term['keypoint_prior/points'] > 0
    assert kr_term['keypoint_prior/points'] == 0


def test_methods_agree_with_call():
  config = tiny_config(16, 'masked_self', 'memory', 'random')
  model, variables, image, reference = init(config)
  out = model.apply(variables, image, reference, train=False)
  # S is the renderer's max over links of w_ij exp(-d^2 / thick) for T' and W.
  expected_heatmap = link_heatmap_reference(out['keypoints'], out['connectivity'],
                                            size=(SIZE, SIZE), thick=config.model.thick)
  np.testing.assert_allclose(out['heatmap'], expected_heatmap, rtol=1e-5, atol=1e-7)
  assert float(out['heatmap'].max()) > 0.01
  keypoints, prior = model.apply(variables, image, train=False, method=model.estimate)
  np.testing.assert_array_equal(keypoints, out['keypoints'])
  np.testing.assert_array_equal(prior, out['prior'])
  recon, heatmap = model.apply(variables, reference, keypoints, train=False,
                               method=model.render_and_decode)
  np.testing.assert_allclose(recon, out['recon'], rtol=1e-6, atol=1e-6)
  np.testing.assert_array_equal(heatmap, out['heatmap'])
  recalled = model.apply(variables, keypoints, method=model.recall)
  np.testing.assert_allclose(recalled, out['keypoints_recon'], rtol=1e-6, atol=1e-6)
  # masked_self scales the reference by alpha: alpha = 0 removes it from the decoder input.
  zero_alpha = {**variables, 'params': {**variables['params'], 'alpha': jnp.zeros(())}}
  r1, _ = model.apply(zero_alpha, reference, keypoints, train=False, method=model.render_and_decode)
  r2, _ = model.apply(zero_alpha, jnp.zeros_like(reference), keypoints, train=False,
                      method=model.render_and_decode)
  np.testing.assert_array_equal(r1, r2)


def test_wide_link_map_is_the_max_of_two_renderings_with_their_own_weights():
  config = tiny_config(16, wide_thick=4e-2, connectivity_init_mean=-1.0,
                       wide_connectivity_init_mean=-4.0)
  model, variables, image, reference = init(config)
  logits = variables['params']['connectivity']
  assert logits['logits_wide'].shape == (16, 16)
  assert abs(float(logits['logits_wide'].mean()) + 4.0) < 0.3   # its own init mean
  out = model.apply(variables, image, reference, train=False)
  # float64 re-derivation of W and W_wide from their logits.
  weights = []
  for name in ('logits', 'logits_wide'):
    sym = np.asarray(logits[name], np.float64)
    sym = (sym + sym.T) / 2
    weights.append(np.log1p(np.exp(sym)) * (1 - np.eye(16)))
  thin = link_heatmap_reference(out['keypoints'], weights[0], size=(SIZE, SIZE),
                                thick=config.model.thick)
  wide = link_heatmap_reference(out['keypoints'], weights[1], size=(SIZE, SIZE), thick=4e-2)
  np.testing.assert_allclose(out['heatmap'], np.maximum(thin, wide), rtol=1e-5, atol=1e-7)
  assert np.mean(np.asarray(wide) > np.asarray(thin)) > 0.01   # both maps matter here
  assert np.mean(np.asarray(thin) > np.asarray(wide)) > 0.01
  np.testing.assert_allclose(out['connectivity'], np.maximum(*weights), rtol=1e-6)
  # Without a wide map there is no second W.
  _, plain, _, _ = init(tiny_config(16))
  assert set(plain['params']['connectivity']) == {'logits'}


@pytest.mark.slow
def test_bfloat16_and_remat_decoder_against_float32():
  config = tiny_config(32, 'masked_self', 'random', 'random', dtype='bfloat16',
                       remat_decoder=True)
  model, variables, image, reference = init(config)
  check_params(variables['params'], config)
  assert all(v.dtype == jnp.float32 for v in jax.tree.leaves(variables['params']))
  out = model.apply(variables, image, reference, train=False)
  check_outputs(out, config)
  assert out['recon'].dtype == jnp.float32
  f32_config = tiny_config(32, 'masked_self', 'random', 'random')
  out32 = build_model(f32_config).apply(variables, image, reference, train=False)
  check_outputs(out32, f32_config)
  # bfloat16 has an 8-bit mantissa; the tiny untrained net's outputs are O(1).
  np.testing.assert_allclose(out['recon'], out32['recon'], atol=0.1)
  for o in (out, out32):
    loss, _ = ppl_objective(o, image, config.loss, l1_image_loss)
    assert np.isfinite(loss)


@pytest.mark.parametrize('init_kind', ['random', 'predefined'])
def test_connectivity_symmetric_positive_zero_diagonal(init_kind):
  n = 16
  module = Connectivity(n, init_kind, 'human16')
  variables = module.init(jax.random.key(0))
  w = np.asarray(module.apply(variables), np.float64)
  logits = np.asarray(variables['params']['logits'], np.float64)
  np.testing.assert_array_equal(w, w.T)
  np.testing.assert_array_equal(np.diag(w), 0)
  off = ~np.eye(n, dtype=bool)
  assert np.all(w[off] > 0)
  sym = (logits + logits.T) / 2
  np.testing.assert_allclose(w[off], np.log1p(np.exp(sym))[off], rtol=1e-6)   # softplus
  if init_kind == 'random':
    assert abs(logits.mean() + 4.0) < 0.3 and 0.7 < logits.std() < 1.3
  else:
    edges = template('human16', n)[1]
    expected = np.full((n, n), OFF_EDGE_LOGIT)
    for i, j in edges:
      expected[i, j] = expected[j, i] = EDGE_LOGIT
    np.testing.assert_allclose(logits, expected, rtol=1e-6)
    np.testing.assert_allclose([w[i, j] for i, j in edges], 1.0, rtol=1e-6)
  # Asymmetric logits (after an optimizer step) still give a symmetric W.
  skewed = {'params': {'logits': variables['params']['logits'] + jnp.triu(jnp.ones((n, n)))}}
  w2 = np.asarray(module.apply(skewed))
  np.testing.assert_array_equal(w2, w2.T)


def test_templates_and_errors():
  points, edges = template('ring', 5)
  np.testing.assert_allclose(np.linalg.norm(points, axis=1), 0.5, rtol=1e-6)
  assert sorted(edges) == [(0, 1), (0, 4), (1, 2), (2, 3), (3, 4)]
  for name, n in (('human16', 16), ('quadruped10', 10), ('humanoid15', 15),
                  ('quadruped18', 18)):
    points, edges = template(name, n)
    assert points.shape == (n, 2) and np.all(np.abs(points) < 1)
    assert len(edges) == n - 1 and len(set(edges)) == n - 1     # trees
  with pytest.raises(ValueError, match='num_parts'):
    KeypointPrior(10, 'predefined', 'human16').init(jax.random.key(0))
  with pytest.raises(ValueError, match='prior_template'):
    template('spider', 8)
  config = tiny_config(16)
  model = build_model(config)
  bad = jnp.zeros((1, SIZE // 2, SIZE // 2, 3))
  with pytest.raises(ValueError, match='image_size'):
    jax.eval_shape(lambda: model.init(jax.random.key(0), bad, bad, train=False))
  config.model.context = 'other'
  with pytest.raises(ValueError, match='context'):
    jax.eval_shape(lambda: build_model(config).init(jax.random.key(0), bad, bad, train=False))


def test_pooled_coordinates_are_the_soft_argmax_on_the_half_pixel_grid():
  # A heatmap concentrated on one feature-map pixel pools exactly that pixel's centre,
  # the same convention as the data's pixels_to_normalized.
  from ppl_jax.data.base import pixels_to_normalized
  from ppl_jax.ops import pixel_grid
  h, w = 3, 5
  grid = np.asarray(pixel_grid(h, w))
  rows, cols = np.meshgrid(np.arange(h), np.arange(w), indexing='ij')
  expected = pixels_to_normalized(np.stack([cols, rows], -1).reshape(-1, 2), w, h)
  np.testing.assert_allclose(grid, expected, atol=1e-6)


@pytest.mark.parametrize('stride', [4, 2])
def test_soft_argmax_anchor_starts_keypoints_at_the_heatmap_soft_argmax(stride):
  # affine_anchor='soft_argmax': the untrained head (zero last kernel) gives
  # T'_i = c_i, the softmax-weighted mean of the 1/stride-resolution pixel centres of
  # heatmap i, whatever the prior T; re-derived here in float64 numpy from the
  # captured heatmap logits.
  config = tiny_config(affine_anchor='soft_argmax', keypoint_prior='random',
                       heatmap_stride=stride)
  model, variables, image, _ = init(config)
  (keypoints, prior), state = model.apply(variables, image, train=False,
                                          method=model.estimate,
                                          capture_intermediates=True)
  logits = np.asarray(state['intermediates']['encoder']['heatmap']['__call__'][0],
                      np.float64)                                  # [B, h, w, N]
  b, h, w, n = logits.shape
  assert (h, w) == (SIZE // stride, SIZE // stride)
  flat = logits.reshape(b, h * w, n)
  weights = np.exp(flat - flat.max(1, keepdims=True))
  weights /= weights.sum(1, keepdims=True)
  ys, xs = np.meshgrid((2 * np.arange(h) + 1) / h - 1, (2 * np.arange(w) + 1) / w - 1,
                       indexing='ij')
  grid = np.stack([xs.ravel(), ys.ravel()], -1)                    # [h*w, 2] (x, y)
  expected = np.einsum('bpn,pc->bnc', weights, grid)
  np.testing.assert_allclose(np.asarray(keypoints), expected, atol=1e-5)
  assert not np.allclose(np.asarray(prior), expected[0], atol=1e-2)
  # The identity anchor of the same weights returns the prior itself.
  config.model.affine_anchor = 'identity'
  identity = build_model(config)
  same, prior2 = identity.apply(variables, image, train=False, method=identity.estimate)
  np.testing.assert_allclose(np.asarray(same), np.broadcast_to(prior2, same.shape), atol=1e-6)
  config.model.affine_anchor = 'centre'
  with pytest.raises(ValueError, match='affine_anchor'):
    jax.eval_shape(lambda: build_model(config).init(jax.random.key(0), image, image,
                                                    train=False))
