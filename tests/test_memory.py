"""Hierarchical VQ memory: nearest tokens, straight-through gradient, EMA update, collections."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ppl_jax.models.memory import HierarchicalMemory, nearest_tokens

M, K, D, B = 3, 5, 6, 7
DECAY, EPS = 0.9, 1e-5


@pytest.fixture(scope='module')
def setup():
  module = HierarchicalMemory(M, K, D, decay=DECAY, eps=EPS)
  tokens = jax.random.normal(jax.random.key(0), (B, M, D))
  variables = module.init(jax.random.key(1), tokens, train=True)
  return module, tokens, variables


def brute_force_indices(tokens, codebook):
  """float64 argmin over every (batch, bank) of the explicit squared distances."""
  tokens = np.asarray(tokens, np.float64)
  codebook = np.asarray(codebook, np.float64)
  out = np.zeros(tokens.shape[:2], np.int64)
  for b in range(tokens.shape[0]):
    for m in range(tokens.shape[1]):
      out[b, m] = np.argmin([np.sum((tokens[b, m] - e) ** 2) for e in codebook[m]])
  return out


def test_nearest_tokens_match_brute_force():
  rng = np.random.default_rng(0)
  tokens = rng.normal(size=(16, 4, 8)).astype(np.float32)
  codebook = rng.normal(size=(4, 10, 8)).astype(np.float32)
  got = np.asarray(nearest_tokens(jnp.asarray(tokens), jnp.asarray(codebook)))
  np.testing.assert_array_equal(got, brute_force_indices(tokens, codebook))


def test_state_lives_in_memory_collection_only(setup):
  _, _, variables = setup
  assert set(variables) == {'memory'}, 'memory state must not be in params'
  state = variables['memory']
  assert state['codebook'].shape == (M, K, D)
  assert state['ema_count'].shape == (M, K)
  np.testing.assert_array_equal(state['ema_count'], np.ones((M, K)))
  np.testing.assert_array_equal(state['ema_sum'], state['codebook'])
  # Normal initialisation: sample statistics of the M*K*D draws.
  assert abs(float(jnp.mean(state['codebook']))) < 0.5
  assert 0.6 < float(jnp.std(state['codebook'])) < 1.4


def test_quantized_values_and_indices(setup):
  module, tokens, variables = setup
  st, quantized, indices = module.apply(variables, tokens, train=False)
  codebook = np.asarray(variables['memory']['codebook'])
  expected_idx = brute_force_indices(tokens, codebook)
  np.testing.assert_array_equal(indices, expected_idx)
  expected_q = codebook[np.arange(M)[None], expected_idx]      # [B, M, D]
  np.testing.assert_array_equal(quantized, expected_q)
  np.testing.assert_allclose(st, expected_q, rtol=0, atol=1e-6)


def test_straight_through_gradient_is_identity(setup):
  module, tokens, variables = setup
  c = jax.random.normal(jax.random.key(2), tokens.shape)

  def f(g):
    st, _, _ = module.apply(variables, g, train=False)
    return jnp.sum(c * st)

  np.testing.assert_array_equal(jax.grad(f)(tokens), c)


def test_one_ema_step_matches_numpy(setup):
  module, tokens, variables = setup
  (_, _, indices), updated = module.apply(variables, tokens, train=True, mutable=['memory'])
  old = jax.tree.map(lambda a: np.asarray(a, np.float64), variables['memory'])
  g = np.asarray(tokens, np.float64)
  idx = brute_force_indices(tokens, old['codebook'])
  np.testing.assert_array_equal(indices, idx)
  counts = np.zeros((M, K))
  sums = np.zeros((M, K, D))
  for b in range(B):
    for m in range(M):
      counts[m, idx[b, m]] += 1
      sums[m, idx[b, m]] += g[b, m]
  ema_count = DECAY * old['ema_count'] + (1 - DECAY) * counts
  ema_sum = DECAY * old['ema_sum'] + (1 - DECAY) * sums
  new_codebook = np.zeros((M, K, D))
  for m in range(M):
    n = ema_count[m].sum()
    for k in range(K):
      smoothed = (ema_count[m, k] + EPS) / (n + K * EPS) * n      # Laplace smoothing
      new_codebook[m, k] = ema_sum[m, k] / smoothed
  new = updated['memory']
  np.testing.assert_allclose(new['ema_count'], ema_count, rtol=1e-6)
  np.testing.assert_allclose(new['ema_sum'], ema_sum, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(new['codebook'], new_codebook, rtol=1e-5, atol=1e-6)


def test_no_update_when_not_training_or_not_mutable(setup):
  module, tokens, variables = setup
  _, state = module.apply(variables, tokens, train=False, mutable=['memory'])
  jax.tree.map(np.testing.assert_array_equal, state['memory'], variables['memory'])
  # train=True with the collection immutable: no error, same quantisation as eval.
  out_train = module.apply(variables, tokens, train=True)
  out_eval = module.apply(variables, tokens, train=False)
  jax.tree.map(np.testing.assert_array_equal, out_train, out_eval)


def test_bad_token_shape_names_config_fields(setup):
  module, _, variables = setup
  with pytest.raises(ValueError, match='memory_banks'):
    module.apply(variables, jnp.zeros((2, M + 1, D)), train=False)


@pytest.mark.skipif(jax.device_count() < 2, reason='needs >= 2 devices (set XLA_FLAGS='
                    '--xla_force_host_platform_device_count=2 to run on CPU)')
def test_ema_update_with_batch_sharded_over_mesh(setup):
  module, tokens, variables = setup
  n = jax.device_count()
  tokens = jax.random.normal(jax.random.key(3), (2 * n, M, D))
  mesh = jax.make_mesh((n,), ('data',), axis_types=(jax.sharding.AxisType.Auto,))
  sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec('data'))
  sharded = jax.device_put(tokens, sharding)
  step = jax.jit(lambda v, g: module.apply(v, g, train=True, mutable=['memory'])[1])
  expected = module.apply(variables, tokens, train=True, mutable=['memory'])[1]
  got = step(variables, sharded)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), got, expected)


def test_dead_tokens_restart_at_the_worst_quantised_batch_tokens():
  # Counts start at 1; one EMA step at decay 0.9 leaves 0.9 + 0.1 n: tokens no batch token
  # chose fall to 0.9, below reseed_below = 0.95, chosen ones stay >= 1.
  module = HierarchicalMemory(M, K, D, decay=DECAY, eps=EPS, reseed_below=0.95)
  tokens = jax.random.normal(jax.random.key(2), (B, M, D))
  variables = module.init(jax.random.key(3), tokens, train=True)
  _, updated = module.apply(variables, tokens, train=True, mutable=['memory'])
  old = jax.tree.map(lambda a: np.asarray(a, np.float64), variables['memory'])
  g = np.asarray(tokens, np.float64)
  idx = brute_force_indices(tokens, old['codebook'])
  new = jax.tree.map(lambda a: np.asarray(a, np.float64), updated['memory'])
  num_dead = 0
  for m in range(M):
    counts = np.bincount(idx[:, m], minlength=K)
    error = [np.sum((g[b, m] - old['codebook'][m, idx[b, m]]) ** 2) for b in range(B)]
    worst_first = sorted(range(B), key=lambda b: -error[b])
    dead = [k for k in range(K) if counts[k] == 0]
    num_dead += len(dead)
    count = DECAY * old['ema_count'][m] + (1 - DECAY) * counts
    total_sum = DECAY * old['ema_sum'][m] + (1 - DECAY) * np.stack(
        [g[idx[:, m] == k, m].sum(axis=0) for k in range(K)])
    for j, k in enumerate(dead):
      count[k] = 1.0
      total_sum[k] = g[worst_first[j % B], m]
    n = count.sum()
    smoothed = (count + EPS) / (n + K * EPS) * n
    np.testing.assert_allclose(new['ema_count'][m], count, rtol=1e-6)
    np.testing.assert_allclose(new['ema_sum'][m], total_sum, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(new['codebook'][m], total_sum / smoothed[:, None],
                               rtol=1e-5, atol=1e-6)
  assert num_dead > 0   # B = 7 tokens over K = 5 per bank: the case must have dead tokens

