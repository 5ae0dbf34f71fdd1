"""One train step on 8 (forced host) devices equals the same step on 1 device.

Adam's first update is lr * g / (|g| + eps): with the default eps = 1e-8 it maps
gradients that are zero up to rounding (biases feeding a normalisation) to +-lr
at random, so the comparison uses eps = 1, where the update is smooth in g; for the same
reason the link loss (a kink at the identity start) is off.
"""

import os
import subprocess
import sys
import textwrap

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

_SCRIPT = textwrap.dedent('''
    import jax
    import numpy as np
    from ppl_jax import config as config_lib, input_pipeline, sharding, train

    assert jax.device_count() == 8, jax.devices()
    config = config_lib.default_config()
    config_lib.make_tiny(config)
    config.batch_size = config.eval_batch_size = 8
    config.optim.eps = 1.0
    # L_l = sum w |l(T) - l(T')| has its kink exactly at the identity start (T' == T): the
    # sign of its gradient there is rounding, which differs with the reduction order.
    config.loss.link_weight = 0.0
    config_lib.validate(config)
    source = input_pipeline.build_source(config.data, 'train')
    batch = next(iter(input_pipeline.create_train_dataset(config, source, seed=0)))
    results = {}
    for n in (1, 8):
      mesh = sharding.make_mesh(jax.devices()[:n])
      setup = train.create_train_setup(config, mesh)
      state = setup.init()
      sharded = sharding.shard_batch(batch, mesh)
      assert len(sharded['image'].sharding.device_set) == n
      state, metrics = setup.train_step(state, sharded, setup.vgg_params)
      results[n] = jax.device_get((state, metrics))
    (state1, metrics1), (state8, metrics8) = results[1], results[8]
    for key in ('loss', 'image_loss', 'keypoint_recon_loss', 'commitment_loss'):
      np.testing.assert_allclose(metrics8[key], metrics1[key], rtol=1e-4, err_msg=key)
    for key in ('params', 'batch_stats', 'memory', 'step', 'rng'):
      leaves8 = jax.tree_util.tree_leaves(state8[key])
      for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(state1[key]), leaves8):
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-6,
                                   err_msg=key + jax.tree_util.keystr(path))
    # Adam's moments hold raw gradients, some of which are zero up to rounding
    # (summed in another order on 8 devices): compare them as one vector.
    moments1, moments8 = (np.concatenate([np.ravel(x) for x in
                                          jax.tree_util.tree_leaves(s['opt_state'])])
                          for s in (state1, state8))
    relative = np.linalg.norm(moments8 - moments1) / np.linalg.norm(moments1)
    assert relative < 1e-4, relative
    print('OK', float(metrics1['loss']), float(metrics8['loss']))
''')


@pytest.mark.slow
def test_eight_devices_match_one():
  env = dict(os.environ, XLA_FLAGS='--xla_force_host_platform_device_count=8',
             PYTHONPATH=REPO + os.pathsep + os.environ.get('PYTHONPATH', ''))
  result = subprocess.run([sys.executable, '-c', _SCRIPT], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=900)
  assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
  assert 'OK' in result.stdout


def test_param_rules_select_partition_specs():
  import jax  # pylint: disable=g-import-not-at-top
  from jax.sharding import PartitionSpec as P  # pylint: disable=g-import-not-at-top
  from ppl_jax import sharding  # pylint: disable=g-import-not-at-top
  mesh = sharding.make_mesh()
  tree = {'params': {'decoder': {'kernel': jax.ShapeDtypeStruct((3, 3, 4, 8), 'float32'),
                                 'bias': jax.ShapeDtypeStruct((8,), 'float32')}},
          'step': jax.ShapeDtypeStruct((), 'int32')}
  rules = (('.*decoder/kernel', (None, None, None, 'data')),)
  specs = sharding.state_shardings(tree, mesh, rules)
  assert specs['params']['decoder']['kernel'].spec == P(None, None, None, 'data')
  assert specs['params']['decoder']['bias'].spec == P()
  assert specs['step'].spec == P()
  with pytest.raises(ValueError, match='one entry per axis'):
    sharding.state_shardings(tree, mesh, (('.*bias', (None, 'data')),))
