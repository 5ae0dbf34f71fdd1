r"""ops.upsample2x (stencil) against jax.image.resize (dense interpolation matrices).

  python benchmarks/upsample.py --json=benchmarks/results/upsample_cpu.json

1. The op alone, forward and backward (VJP), at the up-sampling shapes of the synthetic
   default's encoder and decoder (B=16, 64 px), median of --repeats after warm-up, and the
   largest difference of the two outputs and gradients.
2. The whole synthetic default train step compiled twice in one process, once with each
   up-sampling (`ppl_jax.ops.upsample2x` swapped before tracing), the two programs run
   alternately --steps times: medians and the median of the paired ratios, so that a change in
   the machine's speed during the run hits both alike.
"""

import json
import os
import statistics
import sys
import time

from absl import app
from absl import flags

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _REPO not in sys.path:
  sys.path.insert(0, _REPO)

FLAGS = flags.FLAGS


def _define_flags():
  """train_step.py's --batch (one value; the synthetic default's 16), --steps (timed steps of
  each program, alternating) and --json, and --repeats. train_step.py's other flags are
  defined too and ignored: the step is the synthetic default's at 64 px, 2 warm-up steps."""
  from benchmarks import train_step  # pylint: disable=g-import-not-at-top,unused-import
  flags.DEFINE_integer('repeats', 20, 'Timed runs of the op alone.')
  FLAGS.set_default('batch', ['16'])
  FLAGS.set_default('steps', 20)


# [H, W, C] of the inputs up-sampled by the synthetic default's model at 64 px: the encoder
# trunk's 4 -> 8 -> 16 px (64 channels), the U-Net's 4 -> ... -> 64 px (64, 64, 64, 32).
SHAPES = ((4, 4, 64), (8, 8, 64), (16, 16, 64), (32, 32, 32))


def resize_upsample2x(x):
  """The models' up-sampling before ops.upsample2x."""
  import jax  # pylint: disable=g-import-not-at-top
  b, h, w, c = x.shape
  return jax.image.resize(x, (b, 2 * h, 2 * w, c), method='bilinear')


def op_rows(batch, repeats):
  """Per shape of SHAPES: forward and backward median seconds of both, and their differences."""
  from benchmarks.link_heatmap import median_seconds  # pylint: disable=g-import-not-at-top
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from ppl_jax import ops  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(0)
  rows = []
  for h, w, c in SHAPES:
    x = jnp.asarray(rng.normal(size=(batch, h, w, c)), jnp.float32)
    g = jnp.asarray(rng.normal(size=(batch, 2 * h, 2 * w, c)), jnp.float32)
    row = {'shape': [batch, h, w, c]}
    outputs = {}
    for name, fn in (('resize', resize_upsample2x), ('stencil', ops.upsample2x)):
      forward = jax.jit(fn)
      backward = jax.jit(lambda x, g, fn=fn: jax.vjp(fn, x)[1](g)[0])
      row[f'{name}_fwd_s'] = median_seconds(forward, (x,), repeats, warmup=1)
      row[f'{name}_bwd_s'] = median_seconds(backward, (x, g), repeats, warmup=1)
      outputs[name] = (forward(x), backward(x, g))
    row['max_abs_diff_fwd'] = float(jnp.max(jnp.abs(outputs['resize'][0] - outputs['stencil'][0])))
    row['max_abs_diff_bwd'] = float(jnp.max(jnp.abs(outputs['resize'][1] - outputs['stencil'][1])))
    rows.append(row)
  return rows


def step_record(batch, steps):
  """The synthetic default's train step with each up-sampling, timed alternately."""
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from benchmarks import train_step as train_step_bench  # pylint: disable=g-import-not-at-top
  from ppl_jax import ops, sharding, train  # pylint: disable=g-import-not-at-top
  config = train_step_bench.build_config('synthetic', batch, 64)
  mesh = sharding.make_mesh()
  rng = np.random.default_rng(0)
  data = sharding.shard_batch({k: rng.uniform(-1, 1, (batch, 64, 64, 3)).astype(np.float32)
                               for k in ('image', 'reference')}, mesh)
  stencil = ops.upsample2x
  programs = {}
  try:
    for name, fn in (('resize', resize_upsample2x), ('stencil', stencil)):
      ops.upsample2x = fn   # the models look it up when traced
      setup = train.create_train_setup(config, mesh)
      step = setup.train_step.lower(
          *train_step_bench.abstract_step_args(setup, mesh, batch, 64)).compile()
      state = setup.init()
      for _ in range(2):
        state, metrics = step(state, data, setup.vgg_params)
        jax.block_until_ready(metrics)
      programs[name] = [step, state, setup.vgg_params]
  finally:
    ops.upsample2x = stencil
  times = {name: [] for name in programs}
  for _ in range(steps):
    for name, program in programs.items():
      start = time.perf_counter()
      program[1], metrics = program[0](program[1], data, program[2])
      jax.block_until_ready(metrics)
      times[name].append(time.perf_counter() - start)
  paired = [a / b for a, b in zip(times['resize'], times['stencil'])]
  return {'resize_step_s': statistics.median(times['resize']),
          'stencil_step_s': statistics.median(times['stencil']),
          'resize_step_s_all': times['resize'], 'stencil_step_s_all': times['stencil'],
          'paired_ratio_median': statistics.median(paired),
          'paired_ratio_min': min(paired), 'paired_ratio_max': max(paired)}


def main(argv):
  del argv
  from ppl_jax import provenance  # pylint: disable=g-import-not-at-top
  if len(FLAGS.batch) != 1:
    raise app.UsageError('--batch takes one value here.')
  batch = int(FLAGS.batch[0])
  record = {'batch': batch, 'load_average_1min_start': round(os.getloadavg()[0], 2),
            'provenance': provenance.current()}
  record['ops'] = op_rows(batch, FLAGS.repeats)
  print('| input [B, H, W, C] | resize fwd ms | stencil fwd ms | resize bwd ms | stencil bwd ms '
        '| max diff fwd / bwd |')
  print('| --- | --- | --- | --- | --- | --- |')
  for r in record['ops']:
    print(f'| {r["shape"]} | {r["resize_fwd_s"] * 1e3:.2f} | {r["stencil_fwd_s"] * 1e3:.2f} | '
          f'{r["resize_bwd_s"] * 1e3:.2f} | {r["stencil_bwd_s"] * 1e3:.2f} | '
          f'{r["max_abs_diff_fwd"]:.1e} / {r["max_abs_diff_bwd"]:.1e} |')
  record['step'] = step_record(batch, FLAGS.steps)
  step = record['step']
  print(f'train step (synthetic default, B={batch}, 64 px), {FLAGS.steps} alternating '
        f'steps each: resize {step["resize_step_s"]:.3f} s, '
        f'stencil {step["stencil_step_s"]:.3f} s; '
        f'paired ratio resize / stencil: median {step["paired_ratio_median"]:.3f} '
        f'(min {step["paired_ratio_min"]:.3f}, max {step["paired_ratio_max"]:.3f})')
  record['load_average_1min_end'] = round(os.getloadavg()[0], 2)
  if FLAGS.json:
    with open(FLAGS.json, 'w') as f:
      json.dump(record, f, indent=1)


if __name__ == '__main__':
  _define_flags()
  app.run(main)
