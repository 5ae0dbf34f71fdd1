"""Throughput and peak memory of the jitted PPL train step (synthetic config).

  python benchmarks/train_step.py                      # B in {8, 64} x size in {64, 128}
  python benchmarks/train_step.py --batch=64 --size=128 --perceptual=vgg16 --random_vgg \
      --json=benchmarks/results/train_step.json

Each configuration runs in a fresh subprocess so its peak RSS (getrusage maxrss) is
its own. Timing excludes compilation: one warm-up step, then --steps timed steps on
fixed random batches (the input pipeline is not part of the measurement).
"""

import copy
import json
import resource
import subprocess
import sys
import time

from absl import app
from absl import flags

flags.DEFINE_list('batch', ['8', '64'], 'Global batch sizes.')
flags.DEFINE_list('size', ['64', '128'], 'Image sides in pixels.')
flags.DEFINE_integer('num_parts', 16, 'N keypoints.')
flags.DEFINE_enum('perceptual', 'none', ['none', 'vgg16', 'vgg19'],
                  'Perceptual loss, added to the synthetic config\'s pixel loss '
                  '(needs --vgg_weights or --random_vgg).')
flags.DEFINE_string('vgg_weights', '', 'Keras .h5 VGG weights for --perceptual.')
flags.DEFINE_bool('random_vgg', False, 'Random-weight VGG for --perceptual (timing only).')
flags.DEFINE_enum('dtype', 'float32', ['float32', 'bfloat16'], 'Model compute dtype.')
flags.DEFINE_integer('steps', 5, 'Timed steps per configuration.')
flags.DEFINE_string('json', '', 'Write the records to this JSON file.')
flags.DEFINE_bool('child', False, 'Internal: run one configuration and print JSON.')
FLAGS = flags.FLAGS


def _config(batch: int, size: int):
  sys.path.insert(0, '.')
  from ppl_jax import config as config_lib  # pylint: disable=g-import-not-at-top
  import importlib.util  # pylint: disable=g-import-not-at-top
  spec = importlib.util.spec_from_file_location('synthetic_config', 'configs/synthetic.py')
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = module.get_config(f'size={size}')
  config.batch_size = batch
  config.model.num_parts = FLAGS.num_parts
  config.model.dtype = FLAGS.dtype
  config.loss.perceptual = FLAGS.perceptual
  config.loss.vgg_weights = FLAGS.vgg_weights
  checked = copy.deepcopy(config)
  if FLAGS.random_vgg:
    checked.loss.perceptual = 'none'  # a random VGG needs no weights file
  config_lib.validate(checked)
  return config


def _child(batch: int, size: int) -> dict:
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from ppl_jax import sharding, train  # pylint: disable=g-import-not-at-top

  config = _config(batch, size)
  mesh = sharding.make_mesh()
  setup = train.create_train_setup(config, mesh, random_vgg=FLAGS.random_vgg)
  rng = np.random.default_rng(0)
  batch_np = {k: rng.uniform(-1, 1, (batch, size, size, 3)).astype(np.float32)
              for k in ('image', 'reference')}
  data = sharding.shard_batch(batch_np, mesh)
  state = setup.init()
  start = time.perf_counter()
  state, metrics = setup.train_step(state, data, setup.vgg_params)
  jax.block_until_ready(metrics)
  compile_s = time.perf_counter() - start
  start = time.perf_counter()
  for _ in range(FLAGS.steps):
    state, metrics = setup.train_step(state, data, setup.vgg_params)
  jax.block_until_ready(metrics)
  step_s = (time.perf_counter() - start) / FLAGS.steps
  return {
      'batch': batch, 'size': size, 'num_parts': FLAGS.num_parts,
      'perceptual': FLAGS.perceptual + (' (random weights)' if FLAGS.random_vgg
                                        and FLAGS.perceptual != 'none' else ''),
      'dtype': FLAGS.dtype, 'step_s': step_s, 'steps_per_s': 1.0 / step_s,
      'frames_per_s': batch / step_s, 'first_step_s': compile_s,
      'peak_rss_gib': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
      'device': str(jax.devices()[0].platform), 'loss': float(metrics['loss']),
  }


def main(argv):
  del argv
  if FLAGS.child:
    print('RESULT ' + json.dumps(_child(int(FLAGS.batch[0]), int(FLAGS.size[0]))))
    return
  if FLAGS.perceptual != 'none' and FLAGS.random_vgg:
    print(f'Using a RANDOM-weight {FLAGS.perceptual} for the perceptual loss (timing only).')
  passthrough = [f'--num_parts={FLAGS.num_parts}', f'--perceptual={FLAGS.perceptual}',
                 f'--vgg_weights={FLAGS.vgg_weights}', f'--dtype={FLAGS.dtype}',
                 f'--steps={FLAGS.steps}', f'--random_vgg={FLAGS.random_vgg}']
  records = []
  header = (f'{"batch":>5} {"size":>5} {"N":>3} {"perceptual":>24} {"dtype":>9} '
            f'{"step_s":>8} {"frames/s":>9} {"peak RSS GiB":>13}')
  print(header)
  for size in FLAGS.size:
    for batch in FLAGS.batch:
      result = subprocess.run(
          [sys.executable, __file__, '--child', f'--batch={batch}', f'--size={size}',
           *passthrough], capture_output=True, text=True)
      lines = [l for l in result.stdout.splitlines() if l.startswith('RESULT ')]
      if result.returncode or not lines:
        print(f'batch {batch} size {size} failed:\n{result.stderr[-3000:]}')
        continue
      record = json.loads(lines[-1][len('RESULT '):])
      records.append(record)
      print(f'{record["batch"]:>5} {record["size"]:>5} {record["num_parts"]:>3} '
            f'{record["perceptual"]:>24} {record["dtype"]:>9} {record["step_s"]:>8.3f} '
            f'{record["frames_per_s"]:>9.1f} {record["peak_rss_gib"]:>13.2f}', flush=True)
  if FLAGS.json:
    with open(FLAGS.json, 'w') as f:
      json.dump(records, f, indent=2)


if __name__ == '__main__':
  app.run(main)
