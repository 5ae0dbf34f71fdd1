r"""Own-video configs on a labelled clip: held-out error of the keypoints, per seed.

  python benchmarks/own_videos.py --seeds=0,1 --parallel=2 \
      --config=configs/custom_videos.py:cpu=true \
      --config=configs/custom_videos.py:cpu=true,size=128 \
      --json=benchmarks/results/own_videos_128.json

For every --config and initialisation seed: trains `python -m ppl_jax.main` on --videos
(default: the mirror-mouse clip of ../shared/data) in its own subprocess (--parallel at a
time; 1 for timing), then scores the last checkpoint with `ppl_jax.predict`'s
`evaluate_labels` protocol against --labels (DeepLabCut CollectedData CSV): a linear
regression from the keypoints to the labelled body parts is fitted on half of the labelled
images and scored (mean L2 error, pixels of the labelled images) on the other half, next to
the per-part mean position, the background-subtraction tracker and its centroid fitted the
same way. Each split seed of --label_seeds gives one split; the row is their mean. Prints per
seed and median / worst per config, and writes JSON with the git commit and package versions.
A workdir whose score was made by the current clean commit with the same packages is reused.
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

_MOUSE = os.path.join(os.path.dirname(_REPO), 'shared', 'data', 'mirror-mouse')
_SCORES = ('value', 'mean_position_baseline', 'blob_tracker_baseline', 'centroid_baseline')

flags.DEFINE_multi_string('config', ['configs/custom_videos.py:cpu=true'],
                          'Config file[:arg] to train (repeat to compare configs).')
flags.DEFINE_list('seeds', ['0', '1'], 'Initialisation seeds (config.seed).')
flags.DEFINE_list('label_seeds', ['0', '1', '2', '3', '4'],
                  'Seeds of the fit / held-out split of the labelled images (averaged).')
flags.DEFINE_string('videos', os.path.join(_MOUSE, 'videos'), 'Folder of training videos.')
flags.DEFINE_string('labels', os.path.join(_MOUSE, 'CollectedData.csv'),
                    'DeepLabCut CollectedData CSV of labelled images of the same scene.')
flags.DEFINE_multi_string('override', [], 'Extra --config.x=y flags for every training.')
flags.DEFINE_integer('parallel', 1, 'Trainings at a time (1 for timing; 2 to screen).')
flags.DEFINE_string('root', 'workdir/own_videos', 'Parent folder of the workdirs.')
flags.DEFINE_string('json', '', 'Output JSON (default: benchmarks/results/own_videos.json).')
FLAGS = flags.FLAGS


def _name(config: str) -> str:
  base = os.path.splitext(os.path.basename(config.split(':')[0]))[0]
  arg = config.partition(':')[2]
  return base + (('_' + arg.replace('=', '-').replace(',', '_')) if arg else '')


def _score(workdir: str, labels: str, label_seeds) -> dict:
  """Mean over the split seeds of evaluate_labels' errors (pixels), and the per-split values."""
  from ppl_jax import inference, predict  # pylint: disable=g-import-not-at-top
  from ppl_jax import workdir as workdir_lib  # pylint: disable=g-import-not-at-top
  from ppl_jax.data import dlc  # pylint: disable=g-import-not-at-top
  config = workdir_lib.load_config(workdir)
  restored = inference.restore(config, workdir)
  source = dlc.LabeledFramesSource(labels)
  splits = [predict.evaluate_labels(restored, source, seed=s) for s in label_seeds]
  return {'checkpoint_step': restored.step, 'label_seeds': list(label_seeds),
          'num_images': splits[0]['num_images'],
          **{key: statistics.fmean(s[key] for s in splits) for key in _SCORES},
          'per_split': [{key: s[key] for key in _SCORES} for s in splits]}


def _run(config: str, seed: int, code) -> dict:
  workdir = os.path.join(_REPO, FLAGS.root, _name(config), f'seed{seed}')
  score_path = os.path.join(workdir, 'own_videos_score.json')
  command = [sys.executable, '-m', 'ppl_jax.main', f'--config={config}',
             f'--config.data.root={FLAGS.videos}', f'--workdir={workdir}',
             f'--config.seed={seed}', *FLAGS.override]
  label_seeds = [int(s) for s in FLAGS.label_seeds]
  if os.path.isfile(score_path):
    with open(score_path) as f:
      row = json.load(f)
    if (provenance.same_code(row.get('provenance'), code) and row['command'] == ' '.join(command)
        and row.get('label_seeds') == label_seeds and row.get('labels') == FLAGS.labels):
      print(f'[{_name(config)} seed {seed}] reusing the current score in {workdir}', flush=True)
      return row
  if os.path.exists(workdir):
    shutil.rmtree(workdir)
  os.makedirs(os.path.dirname(workdir), exist_ok=True)
  print(f'[{_name(config)} seed {seed}] training: {" ".join(command)}', flush=True)
  start = time.time()
  with open(f'{workdir}.log', 'w') as log:   # the training's output, beside its workdir
    subprocess.run(command, check=True, cwd=_REPO, stdout=log, stderr=subprocess.STDOUT)
  seconds = time.time() - start
  print(f'[{_name(config)} seed {seed}] trained in {seconds / 60:.1f} min; scoring', flush=True)
  row = {'config': config, 'seed': seed, 'train_seconds': seconds, 'command': ' '.join(command),
         'labels': FLAGS.labels, **_score(workdir, FLAGS.labels, label_seeds),
         'provenance': code}
  with open(score_path, 'w') as f:
    json.dump(row, f, indent=2)
  return row


def _summary(rows) -> dict:
  out = {}
  for config in dict.fromkeys(r['config'] for r in rows):
    values = [r['value'] for r in rows if r['config'] == config]
    out[config] = {'median': statistics.median(values), 'worst': max(values),
                   **{key: statistics.median(r[key] for r in rows if r['config'] == config)
                      for key in _SCORES[1:]}}
  return out


def _print(rows, summary) -> None:
  print(f'{"config":44s} {"seed":>4} {"ppl px":>7} {"mean":>7} {"blob":>7} {"centroid":>8} '
        f'{"min":>5}')
  for r in rows:
    print(f'{r["config"]:44s} {r["seed"]:>4} {r["value"]:7.2f} '
          f'{r["mean_position_baseline"]:7.2f} {r["blob_tracker_baseline"]:7.2f} '
          f'{r["centroid_baseline"]:8.2f} {r["train_seconds"] / 60:5.1f}')
  for config, s in summary.items():
    print(f'{config}: median {s["median"]:.2f} px, worst {s["worst"]:.2f} px '
          f'(mean position {s["mean_position_baseline"]:.2f}, blob tracker '
          f'{s["blob_tracker_baseline"]:.2f}, centroid {s["centroid_baseline"]:.2f})')


def main(argv):
  del argv
  for path in (FLAGS.videos, FLAGS.labels):
    if not os.path.exists(path):
      raise app.UsageError(f'{path} does not exist: pass --videos=FOLDER and '
                           '--labels=CollectedData.csv of your own clip.')
  code = provenance.current_for_results('these scores')
  jobs = [(config, int(seed)) for config in FLAGS.config for seed in FLAGS.seeds]
  with concurrent.futures.ThreadPoolExecutor(max(1, FLAGS.parallel)) as pool:
    trained = list(pool.map(lambda job: _run(*job, code), jobs))
  summary = _summary(trained)
  _print(trained, summary)
  path = FLAGS.json or os.path.join(_REPO, 'benchmarks', 'results', 'own_videos.json')
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, 'w') as f:
    json.dump({'configs': FLAGS.config, 'overrides': FLAGS.override,
               'seeds': [int(s) for s in FLAGS.seeds], 'videos': FLAGS.videos, 'labels': FLAGS.labels, 'parallel': FLAGS.parallel,
               'provenance': code, 'rows': trained, 'summary': summary}, f, indent=2)
  print(f'Wrote {path}')


if __name__ == '__main__':
  app.run(main)
