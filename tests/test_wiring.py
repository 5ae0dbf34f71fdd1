"""The joints between the tested pieces: affine head, memory prior, decoder inputs, train step.

Each test compares against a numpy computation from the parts (or against optax-free Adam),
so a wrong index, a wrong sign or a wrong reduction in the wiring fails here.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ppl_jax import input_pipeline
from ppl_jax import sharding
from ppl_jax import train
from ppl_jax import train_state
from ppl_jax.losses import objective
from ppl_jax.models import build_model
from ppl_jax.models.mixer import MixerDecoder
from ppl_jax.models.ppl import PPL

from conftest import tiny_config


def _images(seed=0, batch=2, size=32):
  rng = np.random.default_rng(seed)
  return tuple(jnp.asarray(rng.uniform(-1, 1, (batch, size, size, 3)), jnp.float32)
               for _ in range(2))


def _randomise(params, path_contains, scale, seed):
  """params with every leaf whose path contains `path_contains` replaced by N(0, scale^2)."""
  leaves = jax.tree_util.tree_flatten_with_path(params)[0]
  rng = np.random.default_rng(seed)
  replaced = {jax.tree_util.keystr(p): jnp.asarray(rng.normal(0, scale, x.shape), x.dtype)
              for p, x in leaves if path_contains in jax.tree_util.keystr(p)}
  assert replaced, path_contains
  return jax.tree_util.tree_map_with_path(
      lambda p, x: replaced.get(jax.tree_util.keystr(p), x), params)


@pytest.mark.parametrize('anchor', ['identity', 'soft_argmax'])
def test_affine_head_applies_theta_to_the_prior(anchor):
  config = tiny_config()
  config.model.affine_anchor = anchor
  model = build_model(config)
  image, reference = _images()
  variables = model.init(jax.random.PRNGKey(0), image, reference, train=False)
  # A non-identity, non-symmetric Theta per keypoint and frame.
  params = _randomise(variables['params'], 'affine_out', 0.5, seed=1)
  out = model.apply(dict(variables, params=params), image, reference, train=False)
  theta = np.asarray(out['theta'], np.float64)        # [B, N, 2, 3]
  prior = np.asarray(out['prior'], np.float64)        # [N, 2]
  assert np.abs(theta[..., 0, 1] - theta[..., 1, 0]).min() > 1e-3
  expected = np.einsum('bnij,nj->bni', theta[..., :2], prior) + theta[..., 2]
  np.testing.assert_allclose(out['keypoints'], expected, rtol=1e-5, atol=1e-5)


def test_memory_prior_is_mix_dec_of_the_bank_means():
  config = tiny_config()
  model = build_model(config)
  image, reference = _images()
  variables = model.init(jax.random.PRNGKey(0), image, reference, train=False)
  codebook = np.asarray(variables['memory']['memory']['codebook'], np.float64)  # [m, k, d]
  assert np.abs(codebook[:, 0] - codebook.mean(axis=1)).max() > 0.1
  m = config.model
  decoder = MixerDecoder(m.num_parts, m.mixer_dec_dim, m.mixer_dec_blocks)
  expected = decoder.apply({'params': variables['params']['mix_dec']},
                           jnp.asarray(codebook.mean(axis=1)[None], jnp.float32))[0]
  np.testing.assert_allclose(model.apply(variables, method=PPL.prior), expected,
                             rtol=1e-5, atol=1e-6)


def test_decoder_reads_the_heatmap_and_the_scaled_reference():
  config = tiny_config()
  config.model.context = 'masked_self'
  model = build_model(config)
  image, reference = _images()
  variables = model.init(jax.random.PRNGKey(0), image, reference, train=False)
  keypoints, _ = model.apply(variables, image, train=False, method=PPL.estimate)

  def decode(v, ref, kp):
    return np.asarray(model.apply(v, ref, kp, train=False, method=PPL.render_and_decode)[0])

  base = decode(variables, reference, keypoints)
  moved = decode(variables, reference, keypoints + 0.3)
  assert np.abs(base - moved).max() > 1e-3            # S changed -> I_recon changed
  assert np.abs(base - decode(variables, reference * 0.5, keypoints)).max() > 1e-3
  # alpha scales the reference: alpha = 2 on ref equals alpha = 1 on 2 * ref.
  doubled = dict(variables, params=dict(variables['params'], alpha=jnp.float32(2.0)))
  np.testing.assert_allclose(decode(doubled, reference, keypoints),
                             decode(variables, 2 * reference, keypoints), rtol=1e-5, atol=1e-5)


def _paper_objective_config():
  """tiny_config() with our optional losses (foreground, equivariance) off: ppl_objective."""
  config = tiny_config()
  config.loss.foreground_weight = 0.0
  config.loss.equivariance_weight = 0.0
  config.loss.equivariance_invert_prob = 0.0
  return config


@pytest.fixture(scope='module')
def step_setup():
  config = _paper_objective_config()
  setup = train.create_train_setup(config, sharding.make_mesh())
  source = input_pipeline.build_source(config.data, 'train')
  batch = next(iter(input_pipeline.create_train_dataset(config, source, seed=0)))
  return config, setup, sharding.shard_batch(batch, setup.mesh)


@pytest.mark.slow
def test_train_step_is_one_adam_step_on_the_objective_gradient(step_setup):
  config, setup, batch = step_setup
  state = jax.device_get(setup.init())
  model = setup.model
  step_rng = jax.random.fold_in(state['rng'], state['step'])

  def loss(params):
    outputs, _ = model.apply(train_state.model_variables(state, params), batch['image'],
                             batch['reference'], train=True, mutable=['batch_stats', 'memory'],
                             rngs={'dropout': step_rng})
    value, _ = train.ppl_objective(outputs, batch['image'], config.loss,
                                   lambda r, t: (jnp.mean(jnp.abs(r - t)), {}))
    return value

  # Jitted (eager op-by-op is minutes on CPU); the step's own gradient path is not reused.
  grads = jax.device_get(jax.jit(jax.grad(loss))(state['params']))
  new_state, metrics = setup.train_step(jax.device_put(state), batch, setup.vgg_params)
  new_params = jax.device_get(new_state['params'])
  np.testing.assert_allclose(metrics['loss'], jax.jit(loss)(state['params']), rtol=1e-5)
  lr = config.optim.learning_rate
  eps = config.optim.eps
  flat_old = jax.tree_util.tree_flatten_with_path(state['params'])[0]
  flat_grad = jax.tree_util.tree_leaves(grads)
  flat_new = jax.tree_util.tree_leaves(new_params)
  checked = 0
  for (path, old), g, new in zip(flat_old, flat_grad, flat_new):
    name = jax.tree_util.keystr(path)
    step_lr = lr * (config.optim.connectivity_lr_multiplier if 'connectivity' in name else 1)
    # Adam's first step, bias-corrected: m = g, v = g^2 -> update -lr g / (|g| + eps).
    g = np.asarray(g, np.float64)
    expected = np.asarray(old, np.float64) - step_lr * g / (np.abs(g) + eps)
    confident = np.abs(g) > 1e-4     # where recomputed gradients agree in sign and size
    np.testing.assert_allclose(np.asarray(new)[confident], expected[confident],
                               rtol=1e-4, atol=step_lr * 1e-3, err_msg=name)
    checked += int(confident.sum())
  assert checked > 1000


@pytest.mark.slow
def test_steps_on_a_fixed_batch_lower_the_loss(step_setup):
  _, setup, batch = step_setup
  state = setup.init()
  losses = []
  for _ in range(15):
    state, metrics = setup.train_step(state, batch, setup.vgg_params)
    losses.append(float(metrics['loss']))
  assert np.mean(losses[-3:]) < 0.8 * np.mean(losses[:3]), losses


@pytest.mark.slow
def test_equivariance_term_enters_the_loss(step_setup):
  config, base_setup, batch = step_setup
  state = base_setup.init()
  base, _, _ = base_setup.loss_and_grads(state, batch, base_setup.vgg_params)

  def metrics_with(**loss_overrides):
    c = _paper_objective_config()
    c.loss.equivariance_weight = 10.0
    c.loss.update(loss_overrides)
    setup = train.create_train_setup(c, sharding.make_mesh())
    metrics, _, grads = setup.loss_and_grads(setup.init(), batch, setup.vgg_params)
    return jax.device_get(metrics), grads

  # The identity warp: the encoder sees the same frames in the same BatchNorm mode, so T'
  # is reproduced exactly and the term is zero.
  identity, _ = metrics_with(equivariance_degrees=0.0, equivariance_log_scale=0.0,
                             equivariance_shift=0.0)
  assert identity['equivariance_loss'] < 1e-10
  np.testing.assert_allclose(identity['loss'], base['loss'], rtol=1e-6)
  # The identity warp with every copy contrast-inverted: the term compares T'(-I) with T'(I),
  # both from train-mode passes on the whole batch, re-derived here.
  inverted, _ = metrics_with(equivariance_degrees=0.0, equivariance_log_scale=0.0,
                             equivariance_shift=0.0, equivariance_invert_prob=1.0)
  model, variables = base_setup.model, train_state.model_variables(state)
  mutable = ['batch_stats', 'memory']

  def keypoints_of(images):
    (keypoints, _), _ = model.apply(variables, images, train=True, method=PPL.estimate,
                                    mutable=mutable)
    return np.asarray(keypoints, np.float64)

  plain, negated = keypoints_of(batch['image']), keypoints_of(-batch['image'])
  expected = objective.equivariance_loss(negated, plain, np.eye(2)[None].repeat(len(plain), 0),
                                         np.zeros((len(plain), 2)))
  assert inverted['equivariance_loss'] > 1e-6
  np.testing.assert_allclose(inverted['equivariance_loss'], expected, rtol=1e-4)
  # The identity warp with every copy mirrored: T'(I flipped left-right) against T'(I) with
  # x negated (pixel centres are symmetric, so the warp is an exact column reversal).
  flipped, _ = metrics_with(equivariance_degrees=0.0, equivariance_log_scale=0.0,
                            equivariance_shift=0.0, equivariance_flip_prob=1.0)
  mirrored = keypoints_of(batch['image'][:, :, ::-1])
  expected = np.mean((mirrored - plain * np.array([-1.0, 1.0])) ** 2)
  assert flipped['equivariance_loss'] > 1e-6
  np.testing.assert_allclose(flipped['equivariance_loss'], expected, rtol=1e-4)
  warped, grads = metrics_with()
  assert warped['equivariance_loss'] > 1e-6
  np.testing.assert_allclose(warped['loss'] - base['loss'], 10.0 * warped['equivariance_loss'],
                             rtol=1e-4)
  assert np.isfinite(train._global_norm(grads))
