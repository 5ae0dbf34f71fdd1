r"""Part discovery over initialisation seeds: does a config find every part on every seed?

  python benchmarks/discovery.py --config=configs/synthetic.py --seeds=0,1,2,3,4
  python benchmarks/discovery.py --config=configs/synthetic.py:kind=quadruped --seeds=0,1,2,3,4
  python benchmarks/discovery.py --config=configs/synthetic.py --seeds=0,1 --name=fg \
      --override=--config.loss.foreground_weight=0     # an ablation

Trains each seed (`--config.seed=S`, same data: the videos have their own seed) in its own
`python -m ppl_jax.main` subprocess, one at a time (`--parallel=2` for screening), then runs
`python -m ppl_jax.evaluate --skip_occlusion` on it, and prints and writes as JSON per seed
and as median / worst: the matched error and its ratio to the mean pose's, the regression
error and its ratio, part coverage and keypoint attachment (`ppl_jax.evaluation.discovery`),
heatmap reliance and the per-joint matched error, with the training time and the git commit and package versions
that made each report. A workdir whose report was made by the current clean commit with the
same packages is reused; any other is trained and evaluated again.
"""

import concurrent.futures
import json
import os
import shutil
import statistics
import subprocess
import sys
import time

from absl import app
from absl import flags

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _REPO not in sys.path:
  sys.path.insert(0, _REPO)

from ppl_jax import provenance  # pylint: disable=g-import-not-at-top,wrong-import-position

flags.DEFINE_string('config', 'configs/synthetic.py', 'Config file[:arg] to train.')
flags.DEFINE_list('seeds', ['0', '1', '2', '3', '4'], 'Initialisation seeds (config.seed).')
flags.DEFINE_string('name', '', 'Name of this configuration (default: from --config).')
flags.DEFINE_multi_string('override', [], 'Extra --config.x=y flags for training.')
flags.DEFINE_string('root', 'workdir/discovery', 'Parent folder of the workdirs.')
flags.DEFINE_string('json', '', 'Output JSON (default: benchmarks/results/discovery_NAME.json).')
flags.DEFINE_integer('parallel', 1, 'Trainings at a time (1 for timing; 2 to screen).')
flags.DEFINE_bool('retrain', False, 'Train again even where a current report exists.')
FLAGS = flags.FLAGS


def _name() -> str:
  if FLAGS.name:
    return FLAGS.name
  base = os.path.splitext(os.path.basename(FLAGS.config.split(':')[0]))[0]
  arg = FLAGS.config.partition(':')[2]
  return base + (('_' + arg.replace('=', '-').replace(',', '_')) if arg else '')


def _current_report(workdir: str, code) -> dict:
  path = os.path.join(workdir, 'eval', 'report.json')
  if FLAGS.retrain or not os.path.isfile(path):
    return None
  with open(path) as f:
    report = json.load(f)
  ok = (provenance.same_code(report.get('provenance'), code)
        and provenance.same_code(report.get('training_provenance'), code))
  return report if ok else None


def _run_seed(seed: int, code) -> dict:
  workdir = os.path.join(FLAGS.root, _name(), f'seed{seed}')
  report = _current_report(workdir, code)
  seconds = None
  train_command = [sys.executable, '-m', 'ppl_jax.main', f'--config={FLAGS.config}',
                   f'--workdir={workdir}', f'--config.seed={seed}', *FLAGS.override]
  if report is None:
    if os.path.exists(workdir):
      shutil.rmtree(workdir)
    start = time.time()
    print(f'[seed {seed}] training: {" ".join(train_command)}', flush=True)
    os.makedirs(os.path.dirname(workdir), exist_ok=True)
    with open(f'{workdir}.log', 'w') as log:   # the training's output, beside its workdir
      subprocess.run(train_command, check=True, cwd=_REPO, stdout=log, stderr=subprocess.STDOUT)
    seconds = time.time() - start
    print(f'[seed {seed}] trained in {seconds / 60:.1f} min; evaluating', flush=True)
    subprocess.run([sys.executable, '-m', 'ppl_jax.evaluate', f'--workdir={workdir}',
                    '--skip_occlusion'], check=True, cwd=_REPO, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    with open(os.path.join(workdir, 'eval', 'report.json')) as f:
      report = json.load(f)
    with open(os.path.join(workdir, 'eval', 'train_seconds.json'), 'w') as f:
      json.dump({'train_seconds': seconds}, f)
  else:
    timing = os.path.join(workdir, 'eval', 'train_seconds.json')
    if os.path.isfile(timing):
      with open(timing) as f:
        seconds = json.load(f)['train_seconds']
    print(f'[seed {seed}] reusing the current report in {workdir}', flush=True)
  return _row(seed, report, seconds, train_command)


def _row(seed, report, seconds, command) -> dict:
  r = report['results']
  matched = r['matched_error']['value']
  mean_pose = r['mean_pose_baseline']['value']
  regression = r['regression'].get('value')
  coverage = r['part_coverage']
  return {
      'seed': seed, 'matched': matched, 'mean_pose': mean_pose,
      'matched_ratio': matched / mean_pose,
      'regression': regression,
      'regression_ratio': None if regression is None else regression / mean_pose,
      'coverage': coverage['value'], 'num_joints': len(coverage['details']['covered']),
      'coverage_best_fraction': coverage['details']['best_fraction'],
      'reliance': r['heatmap_reliance']['value'],
      'attached': r.get('keypoint_attachment', {}).get('value'),
      'attached_per_video': r.get('keypoint_attachment', {}).get('details', {}).get(
          'per_video_mean'),
      'inversion_shift': r.get('contrast_inversion_shift', {}).get('value'),
      'per_joint': r['matched_error']['details']['per_joint'],
      'train_seconds': seconds, 'command': ' '.join(command),
      'training_provenance': report.get('training_provenance'),
      'provenance': report.get('provenance'),
  }


def _summary(rows):
  out = {}
  for key, worst in (('matched_ratio', max), ('regression_ratio', max), ('coverage', min),
                     ('attached', min), ('reliance', min), ('matched', max)):
    values = [r[key] for r in rows if r[key] is not None]
    if values:
      out[key] = {'median': statistics.median(values), 'worst': worst(values)}
  return out


def _count(value) -> str:
  return '-' if value is None else f'{value:.3g}'


def _print(rows, summary):
  header = (f'{"seed":>4} {"matched":>8} {"mean pose":>9} {"ratio":>6} {"regr":>6} '
            f'{"ratio":>6} {"cover":>6} {"attach":>6} {"/video":>6} {"invert":>6} '
            f'{"reliance":>8} {"min":>5}  worst joints (matched)')
  print(header)
  for r in rows:
    worst_joints = sorted(range(len(r['per_joint'])), key=lambda j: -(r['per_joint'][j] or 0))[:3]
    joints = ', '.join(f'{j}:{r["per_joint"][j]:.1f}' for j in worst_joints)
    minutes = f'{r["train_seconds"] / 60:.1f}' if r['train_seconds'] else '-'
    print(f'{r["seed"]:>4} {r["matched"]:8.2f} {r["mean_pose"]:9.2f} {r["matched_ratio"]:6.2f} '
          f'{r["regression"] or float("nan"):6.2f} {r["regression_ratio"] or float("nan"):6.2f} '
          f'{r["coverage"]:>3}/{r["num_joints"]:<2} {_count(r.get("attached")):>6} '
          f'{_count(r.get("attached_per_video")):>6} {_count(r.get("inversion_shift")):>6} '
          f'{r["reliance"]:8.3f} {minutes:>5}  {joints}')
  for stat in ('median', 'worst'):
    s = {k: v[stat] for k, v in summary.items()}
    print(f'{stat:>6}: matched ratio {s["matched_ratio"]:.2f}, regression ratio '
          f'{s.get("regression_ratio", float("nan")):.2f}, coverage {s["coverage"]}, '
          f'attached {_count(s.get("attached"))}, '
          f'reliance {s["reliance"]:.3f}')


def main(argv):
  del argv
  code = provenance.current_for_results('these reports')
  seeds = [int(s) for s in FLAGS.seeds]
  with concurrent.futures.ThreadPoolExecutor(max(1, FLAGS.parallel)) as pool:
    rows = list(pool.map(lambda s: _run_seed(s, code), seeds))
  summary = _summary(rows)
  _print(rows, summary)
  path = FLAGS.json or os.path.join(_REPO, 'benchmarks', 'results', f'discovery_{_name()}.json')
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, 'w') as f:
    json.dump({'config': FLAGS.config, 'name': _name(), 'overrides': FLAGS.override,
               'seeds': seeds, 'parallel': FLAGS.parallel, 'provenance': code,
               'rows': rows, 'summary': summary}, f, indent=2)
  print(f'Wrote {path}')


if __name__ == '__main__':
  app.run(main)
