"""benchmarks/train_step.py helpers, and the bf16 / remat switches through the train step."""

import functools

import jax
import flax.linen as nn
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import load_benchmark

from ppl_jax import sharding
from ppl_jax import train
from ppl_jax.losses import make_image_loss
from ppl_jax.losses import ppl_objective
from ppl_jax.models import build_model
from ppl_jax.models.decoder import UNetDecoder


@pytest.fixture(scope='module')
def bench():
  """benchmarks/train_step.py as a module (loaded once: it defines absl flags)."""
  return load_benchmark('train_step')


def _batch(batch, size, seed=0):
  rng = np.random.default_rng(seed)
  return {k: rng.uniform(-1, 1, (batch, size, size, 3)).astype(np.float32)
          for k in ('image', 'reference')}


def _floating_leaves(tree):
  return [x for x in jax.tree_util.tree_leaves(tree) if jnp.issubdtype(x.dtype, jnp.floating)]


def _abstract_inputs(setup, batch, size):
  """(state, batch, vgg_params) as ShapeDtypeStructs: lowering needs no initialisation."""
  batch_sharding = sharding.batch_sharding(setup.mesh)
  data = {k: jax.ShapeDtypeStruct((batch, size, size, 3), jnp.float32, sharding=batch_sharding)
          for k in ('image', 'reference')}
  return setup.abstract_state, data, setup.vgg_params


@pytest.fixture(scope='module')
def tiny_setup(bench):
  config = bench.build_config('synthetic', 4, 32, tiny=True)
  return config, train.create_train_setup(config, sharding.make_mesh())


@pytest.mark.slow
def test_roofline_helpers_on_a_tiny_step(bench, tiny_setup):
  config, setup = tiny_setup
  args = _abstract_inputs(setup, 4, 32)
  compiled = setup.train_step.lower(*args).compile()

  cost = bench.cost_summary(compiled)
  # The decoder's first 3x3 conv alone is 2 * B * H * W * 9 * C_in * C_out FLOPs (forward).
  first_conv = 2 * 4 * 32 * 32 * 9 * 4 * config.model.decoder_channels[0]
  assert first_conv < cost['flops'] < 1e11
  assert cost['bytes_accessed'] > 0

  memory = bench.memory_summary(compiled)
  param_bytes = sum(x.size * x.dtype.itemsize
                    for x in jax.tree_util.tree_leaves(setup.abstract_state['params']))
  assert memory['argument_bytes'] >= param_bytes
  assert memory['temp_bytes'] > 0 and memory['alias_bytes'] > 0  # the state is donated
  assert memory['peak_memory_bytes'] == (memory['temp_bytes'] + memory['argument_bytes']
                                         + memory['output_bytes'] - memory['alias_bytes'])
  assert bench.jaxpr_peak_bytes(setup.train_step, *args) > memory['argument_bytes']

  # Older jax returns a list with one dict per program, or None without a cost model.
  class Fake:
    def __init__(self, analysis):
      self.analysis = analysis

    def cost_analysis(self):
      return self.analysis

  assert bench.cost_summary(Fake([{'flops': 3.0, 'bytes accessed': 5.0}])) == {
      'flops': 3.0, 'bytes_accessed': 5.0}
  assert bench.cost_summary(Fake(None)) == {'flops': 0.0, 'bytes_accessed': 0.0}

  rates = bench.matmul_flops_per_s(64, 'float32', repeats=2)
  assert len(rates['wall']) == len(rates['cpu']) == 2
  assert min(rates['wall'] + rates['cpu']) > 0
  assert bench.link_heatmap_seconds(2, 4, 16, 1e-3, repeats=1) > 0
  assert bench.pipeline_frames_per_s(config, workers=0, batches=1) > 0


def test_bfloat16_computes_convolutions_in_bf16_and_keeps_float32_state(bench, tiny_setup):
  setups = {'float32': tiny_setup[1], 'bfloat16': train.create_train_setup(
      bench.build_config('synthetic', 4, 32, tiny=True, dtype='bfloat16'),
      sharding.make_mesh())}
  for dtype, setup in setups.items():
    args = _abstract_inputs(setup, 4, 32)
    convolutions = [l for l in setup.train_step.lower(*args).as_text().splitlines()
                    if 'convolution' in l]
    assert convolutions
    assert any('bf16' in l for l in convolutions) == (dtype == 'bfloat16')
    state, metrics = jax.eval_shape(setup.train_step, *args)
    for collection in ('params', 'opt_state', 'batch_stats', 'memory'):
      leaves = _floating_leaves(state[collection])
      assert leaves and all(x.dtype == jnp.float32 for x in leaves), collection
    assert all(v.dtype == jnp.float32 for v in metrics.values())
    assert jax.tree_util.tree_structure(state) == jax.tree_util.tree_structure(args[0])


def _model_loss(config, remat):
  """(loss_fn(params, others, batch, vgg_params), vgg_params): the step's loss, 32 px VGG16."""
  config = bench_config_with_remat(config, remat)
  model = build_model(config)
  image_loss_fn, vgg_params = make_image_loss(
      config.loss, random_vgg=True, size=None, remat=config.model.remat_perceptual)

  def loss_fn(params, others, batch, vgg_params):
    outputs, _ = model.apply(dict(others, params=params), batch['image'], batch['reference'],
                             train=True, mutable=['batch_stats', 'memory'],
                             rngs={'dropout': jax.random.PRNGKey(0)})
    return ppl_objective(outputs, batch['image'], config.loss,
                         functools.partial(image_loss_fn, vgg_params))[0]

  return loss_fn, vgg_params


def bench_config_with_remat(config, remat):
  config = config.copy_and_resolve_references()
  config.model.remat_encoder = remat == 'all'
  config.model.remat_decoder = remat in ('decoder', 'both', 'all')
  config.model.remat_perceptual = remat in ('perceptual', 'both', 'all')
  return config


def _close(got_tree, want_tree, rtol):
  for got, want in zip(jax.tree_util.tree_leaves(got_tree),
                       jax.tree_util.tree_leaves(want_tree)):
    assert np.linalg.norm(got - want) <= rtol * np.linalg.norm(want) + 1e-7


def _random_variables(init_fn, seed=0):
  """The variables `init_fn()` would return, filled with numpy random numbers.

  (`model.init` takes ~20 s to compile on a 2-core CPU, mostly its random initialisers.)
  Kernels ~ N(0, 1 / fan_in), BatchNorm scale and variance and the EMA counts 1, means 0.
  """
  shapes = jax.eval_shape(init_fn)
  rng = np.random.default_rng(seed)

  def fill(path, leaf):
    name = str(path[-1].key) if hasattr(path[-1], 'key') else str(path[-1])
    if name in ('scale', 'var', 'ema_count'):
      return jnp.ones(leaf.shape, leaf.dtype)
    if name == 'mean':
      return jnp.zeros(leaf.shape, leaf.dtype)
    fan_in = int(np.prod(leaf.shape[:-1])) if len(leaf.shape) > 1 else 1
    return jnp.asarray(rng.normal(size=leaf.shape) / np.sqrt(fan_in), leaf.dtype)

  return jax.tree_util.tree_map_with_path(fill, shapes)


@pytest.mark.slow
def test_remat_settings_same_loss_and_gradients_less_memory(bench):
  config = bench.build_config('synthetic', 2, 32, tiny=True, perceptual='vgg16',
                              random_vgg=True)
  batch = {k: jnp.asarray(v) for k, v in _batch(2, 32, seed=1).items()}
  image = batch['image'][:1]
  variables = _random_variables(lambda: build_model(config).init(
      jax.random.PRNGKey(0), image, image, train=False))
  others = {k: v for k, v in variables.items() if k != 'params'}
  results, peaks = {}, {}
  for remat in ('none', 'decoder', 'perceptual', 'both', 'all'):
    loss_fn, vgg_params = _model_loss(config, remat)
    args = (variables['params'], others, batch, vgg_params)
    program = jax.jit(jax.value_and_grad(loss_fn))
    peaks[remat] = bench.jaxpr_peak_bytes(program, *args)
    if remat in ('none', 'all'):   # two compilations keep the test short
      results[remat] = program(*args)
  (loss, grads), (base_loss, base_grads) = results['all'], results['none']
  assert np.isfinite(base_loss)
  np.testing.assert_allclose(loss, base_loss, rtol=1e-5)
  _close(grads, base_grads, 1e-4)
  for remat in ('decoder', 'perceptual', 'both', 'all'):
    assert peaks[remat] < peaks['none'], (remat, peaks)
  assert peaks['all'] < peaks['both'], peaks


def test_decoder_remat_recomputes_level_by_level(bench):
  """UNetDecoder(remat=True): same output and gradients, a lower memory peak than no remat
  and than one remat around the whole decoder."""
  x = jnp.asarray(np.random.default_rng(2).uniform(-1, 1, (2, 16, 16, 4)), jnp.float32)
  channels = (4, 8, 8)
  plain = UNetDecoder(channels)
  variables = _random_variables(lambda: plain.init(jax.random.PRNGKey(0), x, False))

  def loss(module):
    def fn(params, x):
      y, _ = module.apply(dict(variables, params=params), x, True,
                          mutable=['batch_stats'])
      return jnp.sum(y * x[..., :3])
    return jax.jit(jax.value_and_grad(fn, argnums=(0, 1)))

  whole = nn.remat(UNetDecoder, static_argnums=(2,))(channels)
  programs = {'none': loss(plain), 'levels': loss(UNetDecoder(channels, remat=True)),
              'whole': loss(whole)}
  peaks = {k: bench.jaxpr_peak_bytes(p, variables['params'], x) for k, p in programs.items()}
  assert peaks['levels'] < peaks['whole'] <= peaks['none'], peaks
  (value, grads), (base_value, base_grads) = (programs[k](variables['params'], x)
                                              for k in ('levels', 'none'))
  np.testing.assert_allclose(value, base_value, rtol=1e-5)
  _close(grads, base_grads, 1e-4)


def test_jaxpr_peak_follows_checkpointing(bench):
  def layer(x, w):
    return jnp.tanh(x @ w)

  def net(ws, x, remat):
    f = jax.checkpoint(layer) if remat else layer
    for w in ws:
      x = f(x, w)
    return jnp.sum(x)

  ws = [jnp.ones((32, 32)) for _ in range(8)]
  x = jnp.ones((512, 32))
  activation = 512 * 32 * 4
  plain, remat = (bench.jaxpr_peak_bytes(jax.grad(functools.partial(net, remat=r)), ws, x)
                  for r in (False, True))
  arguments = 8 * 32 * 32 * 4 + activation
  # Without remat all 8 tanh outputs are kept for the backward pass; with it, only inputs.
  assert plain >= arguments + 8 * activation
  assert remat < plain - 4 * activation
