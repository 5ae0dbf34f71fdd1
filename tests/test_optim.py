"""Optimizer: 512x connectivity lr, frozen priors, clipping, AdamW, schedules."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ppl_jax import config as config_lib
from ppl_jax import optim


def _params(rng):
  return {
      'connectivity': {'logits': rng.normal(size=(4, 4)),
                       'logits_wide': rng.normal(size=(4, 4))},
      'keypoint_prior': {'points': rng.normal(size=(4, 2))},
      'encoder': {'Dense_0': {'kernel': rng.normal(size=(3, 5)),
                              'bias': rng.normal(size=(5,))}},
  }


def _adam_reference(grads_seq, lrs, b1=0.9, b2=0.999, eps=1e-8):
  """float64 Adam: the update of every step (lrs[t] is the lr of step t)."""
  m = v = 0.0
  updates = []
  for t, (g, lr) in enumerate(zip(grads_seq, lrs), start=1):
    m = b1 * m + (1 - b1) * g
    v = b2 * v + (1 - b2) * g * g
    m_hat, v_hat = m / (1 - b1 ** t), v / (1 - b2 ** t)
    updates.append(-lr * m_hat / (np.sqrt(v_hat) + eps))
  return updates


def _run(config, params, grads_seq):
  tx = optim.make_optimizer(config)
  as_f32 = lambda tree: jax.tree_util.tree_map(lambda x: jnp.asarray(x, jnp.float32), tree)
  params = as_f32(params)
  state = tx.init(params)
  updates_seq = []
  for grads in grads_seq:
    updates, state = tx.update(as_f32(grads), state, params)
    updates_seq.append(updates)
  return updates_seq


def _config(**optim_fields):
  config = config_lib.default_config()
  config.optim.update(optim_fields)
  return config


def test_labels():
  config = config_lib.default_config()
  config.model.keypoint_prior = 'predefined'
  config.model.keypoint_prior_trainable = False
  labels = optim.param_labels(_params(np.random.default_rng(0)), config.model)
  assert labels['connectivity']['logits'] == 'connectivity'
  assert labels['connectivity']['logits_wide'] == 'connectivity'
  assert labels['keypoint_prior']['points'] == 'frozen'
  assert labels['encoder']['Dense_0']['kernel'] == 'base'
  config.model.connectivity_trainable = False
  labels = optim.param_labels(_params(np.random.default_rng(0)), config.model)
  assert labels['connectivity']['logits'] == 'frozen'
  assert labels['connectivity']['logits_wide'] == 'frozen'


def test_connectivity_lr_and_frozen_prior():
  rng = np.random.default_rng(1)
  params = _params(rng)
  grads_seq = [_params(rng) for _ in range(3)]
  config = _config(learning_rate=1e-3)
  config.optim.connectivity_lr_multiplier = 512.0
  config.model.keypoint_prior = 'random'
  config.model.keypoint_prior_trainable = False
  updates_seq = _run(config, params, grads_seq)
  for name, path, lr in [('base', ('encoder', 'Dense_0', 'kernel'), 1e-3),
                         ('connectivity', ('connectivity', 'logits'), 512e-3)]:
    grads = [g[path[0]][path[1]] if len(path) == 2 else g[path[0]][path[1]][path[2]]
             for g in grads_seq]
    expected = _adam_reference(grads, [lr] * 3)
    for t, updates in enumerate(updates_seq):
      node = updates
      for p in path:
        node = node[p]
      np.testing.assert_allclose(np.asarray(node), expected[t], rtol=2e-5, atol=1e-9,
                                 err_msg=name)
  for updates in updates_seq:
    np.testing.assert_array_equal(np.asarray(updates['keypoint_prior']['points']), 0.0)


def test_connectivity_start_step():
  # W's lr is 0 for steps 0 and 1; Adam's moments still take those gradients (float64
  # reference with lrs 0, 0, 64e-3, 64e-3).
  rng = np.random.default_rng(2)
  params = _params(rng)
  grads_seq = [_params(rng) for _ in range(4)]
  config = _config(learning_rate=1e-3, connectivity_lr_multiplier=64.0,
                   connectivity_start_step=2)
  updates_seq = _run(config, params, grads_seq)
  expected = _adam_reference([g['connectivity']['logits'] for g in grads_seq],
                             [0.0, 0.0, 64e-3, 64e-3])
  for t, updates in enumerate(updates_seq):
    np.testing.assert_allclose(np.asarray(updates['connectivity']['logits']), expected[t],
                               rtol=2e-5, atol=1e-9)
  base = _adam_reference([g['encoder']['Dense_0']['bias'] for g in grads_seq], [1e-3] * 4)
  np.testing.assert_allclose(np.asarray(updates_seq[0]['encoder']['Dense_0']['bias']), base[0],
                             rtol=2e-5, atol=1e-9)
  with pytest.raises(ValueError, match='optim.connectivity_start_step'):
    bad = _config(connectivity_start_step=-1)
    bad.loss.perceptual, bad.loss.pixel = 'none', 'l1'
    config_lib.validate(bad, num_devices=1, num_processes=1)


def test_memory_prior_flag_ignored():
  # keypoint_prior_trainable only concerns explicit priors; 'memory' has no such param.
  config = config_lib.default_config()
  config.model.keypoint_prior_trainable = False
  labels = optim.param_labels(_params(np.random.default_rng(0)), config.model)
  assert labels['keypoint_prior']['points'] == 'base'


def test_clipping():
  rng = np.random.default_rng(2)
  params = _params(rng)
  grads_seq = [_params(rng), _params(rng)]
  grads_seq[0] = {k: {kk: (vv * 100 if not isinstance(vv, dict) else
                           {a: b * 100 for a, b in vv.items()})
                      for kk, vv in v.items()} for k, v in grads_seq[0].items()}
  clip = 1.0
  config = _config(grad_clip_norm=clip, learning_rate=1e-2)
  updates_seq = _run(config, params, grads_seq)

  def flat(tree):
    out = []
    for v in tree.values():
      for vv in v.values():
        out.extend(vv.values() if isinstance(vv, dict) else [vv])
    return out

  clipped = []
  for g in grads_seq:
    norm = math.sqrt(sum(float(np.sum(x ** 2)) for x in flat(g)))
    scale = min(1.0, clip / norm)
    clipped.append(scale * g['encoder']['Dense_0']['bias'])
  expected = _adam_reference(clipped, [1e-2, 1e-2])
  np.testing.assert_allclose(np.asarray(updates_seq[1]['encoder']['Dense_0']['bias']),
                             expected[1], rtol=2e-5)


def test_adamw_decay():
  params = {'encoder': {'w': np.full((3,), 2.0)}}
  grads = {'encoder': {'w': jnp.asarray([1.0, -1.0, 0.5])}}
  config = _config(optimizer='adamw', weight_decay=0.1, learning_rate=1e-2)
  (updates,) = _run(config, params, [grads])
  expected = _adam_reference([np.asarray([1.0, -1.0, 0.5])], [1e-2])[0] - 1e-2 * 0.1 * 2.0
  np.testing.assert_allclose(np.asarray(updates['encoder']['w']), expected, rtol=1e-5)


@pytest.mark.parametrize('schedule', ['constant', 'cosine', 'warmup_cosine'])
def test_schedules(schedule):
  config = _config(schedule=schedule, learning_rate=0.1, warmup_steps=10)
  fn = optim.learning_rate_schedule(config.optim, 110)
  for step in (0, 5, 10, 60, 110):
    if schedule == 'constant':
      expected = 0.1 * min(1.0, step / 10)
    elif schedule == 'cosine':
      expected = 0.1 * 0.5 * (1 + math.cos(math.pi * step / 110))
    else:
      expected = (0.1 * step / 10 if step < 10 else
                  0.1 * 0.5 * (1 + math.cos(math.pi * (step - 10) / 100)))
    np.testing.assert_allclose(float(fn(step)), expected, rtol=1e-5, atol=1e-7)
