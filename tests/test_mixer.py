"""MIX_enc / MIX_dec against a float64 numpy re-derivation from their parameters."""

import jax
import numpy as np

from ppl_jax.models.mixer import MixerDecoder, MixerEncoder


def np_dense(p, x):
  return x @ np.asarray(p['kernel'], np.float64) + np.asarray(p['bias'], np.float64)


def np_layer_norm(p, x, eps=1e-6):   # flax.linen.LayerNorm default epsilon
  mu = x.mean(-1, keepdims=True)
  var = ((x - mu) ** 2).mean(-1, keepdims=True)
  return (x - mu) / np.sqrt(var + eps) * np.asarray(p['scale']) + np.asarray(p['bias'])


def np_gelu(x):                       # tanh approximation (flax.linen.gelu default)
  return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x ** 3)))


def np_mlp(p, x):
  return np_dense(p['Dense_1'], np_gelu(np_dense(p['Dense_0'], x)))


def np_mixer_block(p, x):
  y = np_layer_norm(p['LayerNorm_0'], x).swapaxes(-1, -2)
  x = x + np_mlp(p['token_mixing'], y).swapaxes(-1, -2)
  return x + np_mlp(p['channel_mixing'], np_layer_norm(p['LayerNorm_1'], x))


def np_token_linear(p, x):
  return np_dense(p['Dense_0'], x.swapaxes(-1, -2)).swapaxes(-1, -2)


def test_mixer_encoder_matches_numpy():
  n, m, d, blocks = 5, 3, 8, 2
  module = MixerEncoder(num_banks=m, dim=d, num_blocks=blocks)
  points = jax.random.uniform(jax.random.key(0), (4, n, 2), minval=-1, maxval=1)
  params = module.init(jax.random.key(1, impl='rbg'), points)['params']
  got = module.apply({'params': params}, points)
  assert got.shape == (4, m, d)
  x = np_dense(params['embed'], np.asarray(points, np.float64))
  for i in range(blocks):
    x = np_mixer_block(params[f'block_{i}'], x)
  x = np_token_linear(params['to_banks'], np_layer_norm(params['norm'], x))
  expected = np_dense(params['out'], x)
  np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


def test_mixer_decoder_matches_numpy():
  n, m, d, hidden = 6, 3, 8, 4
  module = MixerDecoder(num_points=n, hidden_dim=hidden, num_blocks=1)
  tokens = jax.random.normal(jax.random.key(2), (2, m, d))
  params = module.init(jax.random.key(3, impl='rbg'), tokens)['params']
  got = module.apply({'params': params}, tokens)
  assert got.shape == (2, n, 2)
  x = np_token_linear(params['to_points'], np.asarray(tokens, np.float64))
  x = np_dense(params['embed'], x)
  x = np_mixer_block(params['block_0'], x)
  expected = np_dense(params['out'], np_layer_norm(params['norm'], x))
  np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


def test_decoded_prior_starts_inside_the_image():
  # The memory-distilled prior at initialisation: MIX_dec's output layer has std 1/3 on
  # LayerNorm'd features, so the prior lies within [-1, 1] (lecun_normal put ~1/3 outside).
  outside, values = 0, []
  for seed in range(5):
    decoder = MixerDecoder(num_points=16, hidden_dim=32, num_blocks=1)
    tokens = jax.random.normal(jax.random.PRNGKey(100 + seed), (1, 16, 64))
    variables = decoder.init(jax.random.PRNGKey(seed), tokens)
    kernel = np.asarray(variables['params']['out']['kernel'])
    np.testing.assert_allclose(kernel.std(), 1 / 3 / np.sqrt(32), rtol=0.25)
    points = np.asarray(decoder.apply(variables, tokens))
    outside += int((np.abs(points) > 1).sum())
    values.append(points)
  assert outside <= 2, outside   # of 5 x 32 coordinates
  assert 0.15 < np.std(values) < 0.5
