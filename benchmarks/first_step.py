r"""The first training step's loss and gradients, saved and compared across code or XLA flags.

  python benchmarks/first_step.py --config=configs/synthetic.py --out=/tmp/before.npz
  (change the code, or set XLA_FLAGS)
  python benchmarks/first_step.py --config=configs/synthetic.py --out=/tmp/after.npz \
      --compare=/tmp/before.npz

Builds the config's train setup, takes the first batch of its training pipeline (same seed,
same data) and the initial state, and evaluates `TrainSetup.loss_and_grads` once: every
loss term and the gradient of every parameter. With --compare it prints the largest relative
difference of the losses and of the gradients (per leaf: max |a - b| / max |b|, with max |b|
floored at 1e-6 of the largest gradient entry, and over all
gradients: |a - b| / |b| in the global 2-norm) and exits 1 when one exceeds --rtol. This is the
check that a speed change keeps the numerics (training is chaotic, so later steps drift).
"""

import json
import os
import sys

from absl import app
from absl import flags
from ml_collections import config_flags
import numpy as np

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _REPO not in sys.path:
  sys.path.insert(0, _REPO)

FLAGS = flags.FLAGS


def _define_flags():   # on running the script only: step_program.py imports this module
  config_flags.DEFINE_config_file('config', os.path.join(_REPO, 'configs', 'synthetic.py'),
                                  'Training config.')
  flags.DEFINE_string('out', '', 'Write the losses and gradients to this .npz.')
  flags.DEFINE_string('compare', '', 'A .npz from an earlier run to compare against.')
  flags.DEFINE_float('rtol', 1e-4, 'Largest relative difference accepted by --compare.')


def setup_and_first_batch(config):
  """(TrainSetup, the first batch of the config's training pipeline, sharded)."""
  from ppl_jax import input_pipeline, sharding, train  # pylint: disable=g-import-not-at-top
  mesh = sharding.make_mesh()
  setup = train.create_train_setup(config, mesh)
  source = input_pipeline.build_source(config.data, 'train')
  dataset = input_pipeline.create_train_dataset(config, source, seed=config.seed)
  return setup, sharding.shard_batch(next(iter(dataset)), mesh)


def first_step_values(config) -> dict:
  """{'loss/<name>': scalar, 'grad/<path>': array} of the first step, as float64 numpy."""
  import jax  # pylint: disable=g-import-not-at-top
  setup, batch = setup_and_first_batch(config)
  metrics, _, grads = setup.loss_and_grads(setup.init(), batch, setup.vgg_params)
  values = {f'loss/{k}': np.float64(v) for k, v in jax.device_get(metrics).items()}
  for path, leaf in jax.tree_util.tree_flatten_with_path(jax.device_get(grads))[0]:
    values['grad/' + jax.tree_util.keystr(path)] = np.asarray(leaf, np.float64)
  return values


def compare(new: dict, old: dict) -> dict:
  """Relative differences of `new` against `old` (same keys)."""
  if set(new) != set(old):
    raise ValueError(f'different entries: only new {sorted(set(new) - set(old))[:5]}, '
                     f'only old {sorted(set(old) - set(new))[:5]}')
  worst_loss = max(abs(new[k] - old[k]) / max(abs(old[k]), 1e-12)
                   for k in new if k.startswith('loss/'))
  grads = [k for k in new if k.startswith('grad/')]
  # Leaves whose gradient is zero up to rounding (a bias before a softmax) would make any
  # difference look large: their scale is floored at 1e-6 of the largest gradient entry.
  floor = 1e-6 * max(np.abs(old[k]).max() for k in grads)
  per_leaf = {k: float(np.abs(new[k] - old[k]).max() / max(np.abs(old[k]).max(), floor))
              for k in grads}
  diff = np.sqrt(sum(np.sum((new[k] - old[k])**2) for k in grads))
  norm = np.sqrt(sum(np.sum(old[k]**2) for k in grads))
  worst_leaf = max(per_leaf, key=per_leaf.get)
  return {'loss_rel': float(worst_loss), 'grad_global_rel': float(diff / norm),
          'grad_worst_leaf_rel': per_leaf[worst_leaf], 'grad_worst_leaf': worst_leaf}


def main(argv):
  del argv
  values = first_step_values(FLAGS.config)
  print(f'XLA_FLAGS={os.environ.get("XLA_FLAGS", "")!r}')
  for k in sorted(values):
    if k.startswith('loss/'):
      print(f'{k:32s} {values[k]:.8g}')
  if FLAGS.out:
    np.savez(FLAGS.out, **values)
  if FLAGS.compare:
    with np.load(FLAGS.compare) as old:
      result = compare(values, {k: old[k] for k in old.files})
    print(json.dumps(result, indent=2))
    worst = max(result['loss_rel'], result['grad_global_rel'], result['grad_worst_leaf_rel'])
    if worst > FLAGS.rtol:
      print(f'relative difference {worst:.3g} > --rtol={FLAGS.rtol:g}')
      sys.exit(1)


if __name__ == '__main__':
  _define_flags()
  app.run(main)
