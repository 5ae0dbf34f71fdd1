r"""Mixed-precision check: the synthetic benchmark trained in float32 and in bfloat16.

  python benchmarks/bf16_accuracy.py --parallel --seed=0 \
      --json=benchmarks/results/bf16_accuracy_1500_seed0.json

Trains configs/synthetic.py twice with the same seed and the same number of steps, once with
config.model.dtype=float32 and once with bfloat16 (convolutions and matmuls of the encoder
trunk and the decoder in bf16; parameters, optimizer state, losses and the memory's EMA stay
float32), each in its own `python -m ppl_jax.main` subprocess, and reports both min-cost-flow
matched errors (the end-of-run evaluation's `eval.json`) and their relative difference. The
issue asks for |bf16 - f32| / f32 <= 5%. Workdirs are wiped first (no resuming).
"""

import json
import os
import shutil
import subprocess
import sys
import time

from absl import app
from absl import flags

flags.DEFINE_integer('steps', 0, 'config.num_train_steps of both runs (0: the config\'s).')
flags.DEFINE_integer('seed', 0, 'config.seed of both runs.')
flags.DEFINE_string('root', '/tmp/ppl_bf16_accuracy', 'Parent folder of the two workdirs.')
flags.DEFINE_list('extra', [], 'More --config.x=y overrides for both runs.')
flags.DEFINE_bool('parallel', False, 'Train both at once (times then include the sharing).')
flags.DEFINE_string('json', '', 'Write the two records and the comparison here.')
FLAGS = flags.FLAGS

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _start(dtype):
  """Starts the training of one dtype; returns (record without results, process)."""
  workdir = os.path.join(FLAGS.root, dtype)
  shutil.rmtree(workdir, ignore_errors=True)
  steps = [f'--config.num_train_steps={FLAGS.steps}'] if FLAGS.steps else []
  command = [sys.executable, '-m', 'ppl_jax.main', '--config=configs/synthetic.py',
             f'--workdir={workdir}', f'--config.seed={FLAGS.seed}', *steps,
             '--config.image_summary_every_steps=0', f'--config.model.dtype={dtype}',
             *FLAGS.extra]
  print(' '.join(command[1:]), flush=True)
  log = open(os.path.join(FLAGS.root, f'{dtype}.log'), 'w') if FLAGS.parallel else None
  process = subprocess.Popen(command, cwd=_REPO, stdout=log, stderr=log)
  if log:
    log.close()   # the child holds its own descriptor
  return {'dtype': dtype, 'command': 'python ' + ' '.join(command[1:]), 'workdir': workdir,
          'start': time.perf_counter()}, process


def _finish(record, process):
  if process.wait():
    raise RuntimeError(f'The {record["dtype"]} run failed (exit {process.returncode}): '
                       f'{record["command"]}')
  record['seconds'] = time.perf_counter() - record.pop('start')
  with open(os.path.join(record['workdir'], 'eval.json')) as f:
    results = json.load(f)
  with open(os.path.join(record['workdir'], 'config.json')) as f:
    record['steps'] = json.load(f)['num_train_steps']
  record.update(matched_error=results['matched_error'],
                mean_pose_matched_error=results.get('mean_pose_matched_error'),
                num_frames=results['num_frames'])
  return record


def main(argv):
  del argv
  os.makedirs(FLAGS.root, exist_ok=True)
  if FLAGS.parallel:   # both at once; their logs go to ROOT/<dtype>.log
    started = [_start('float32'), _start('bfloat16')]
    records = [_finish(*run) for run in started]
  else:
    records = [_finish(*_start('float32')), _finish(*_start('bfloat16'))]
  f32, bf16 = (r['matched_error'] for r in records)
  relative = abs(bf16 - f32) / f32
  print(f'\nconfigs/synthetic.py, seed {FLAGS.seed}, {records[0]["steps"]} steps; min-cost-flow '
        'matched error (L2 x100, units of the image side):')
  for r in records:
    print(f'  {r["dtype"]:<9} {r["matched_error"]:.3f}   (mean pose '
          f'{r["mean_pose_matched_error"]:.3f}; {r["seconds"] / 60:.1f} min)')
  print(f'  |bf16 - f32| / f32 = {100 * relative:.1f}% '
        f'({"within" if relative <= 0.05 else "OUTSIDE"} the 5% target)')
  if FLAGS.json:
    with open(FLAGS.json, 'w') as f:
      json.dump({'steps': records[0]['steps'], 'seed': FLAGS.seed, 'runs': records,
                 'relative_difference': relative}, f, indent=1)


if __name__ == '__main__':
  app.run(main)
