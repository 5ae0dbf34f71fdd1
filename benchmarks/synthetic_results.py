"""Results on the embedded synthetic benchmark: writes RESULTS.md.

  python benchmarks/synthetic_results.py                 # the full table (~1.5 h on 2 CPU cores)
  python benchmarks/synthetic_results.py --seeds=0,1 --root=workdir/results --out=RESULTS.md

For every seed it trains, each in its own `python -m ppl_jax.main` subprocess (the exact
command lines go into RESULTS.md):
  - PPL: configs/synthetic.py, the README's default run;
  - no memory (AutoLink-like): the same config with a random, trainable keypoint prior
    instead of the memory-distilled one (Table 3 column 9, `variant=rand_train-rand_train`);
  - PPL with the paper's reconstruction context (another frame of the video) in place of
    the default's release context (the frame itself, 80% of its blocks masked);
and evaluates each with `ppl_jax.evaluate` (both protocols, the occlusion sweeps with
iterative inference, prior quality), plus an untrained PPL (the initial state of the
same seed) and the mean-training-pose baseline. A run whose workdir already holds its
final checkpoint is evaluated again without retraining (`--retrain` forces it).
The figures of the first seed's PPL run are copied to benchmarks/results/synthetic/.
"""

import json
import os
import shutil
import subprocess
import sys
import time

from absl import app
from absl import flags
import numpy as np

flags.DEFINE_list('seeds', ['0'], 'config.seed of each repetition.')
flags.DEFINE_string('root', 'workdir/results', 'Parent folder of the training workdirs.')
flags.DEFINE_string('out', 'RESULTS.md', 'Markdown file to write.')
flags.DEFINE_string('json', 'benchmarks/results/synthetic_results.json',
                    'Every number of the table, per seed.')
flags.DEFINE_string('figures', 'benchmarks/results/synthetic',
                    'Where the first PPL run\'s figures are copied ("" = nowhere).')
flags.DEFINE_integer('steps', 0, 'Override num_train_steps (0 = the config\'s).')
flags.DEFINE_integer('max_eval_frames', 0, 'Evaluate the first N test frames (0 = all).')
flags.DEFINE_bool('paper_settings', False, 'Also train PPL with the paper\'s affine head, '
                  'link width and connectivity init/lr (PAPER_SETTINGS).')
flags.DEFINE_bool('retrain', False, 'Train again even if the final checkpoint exists.')
flags.DEFINE_bool('reuse_reports', False, 'Read each run\'s existing eval/report.json '
                  'instead of evaluating again; refuses a report (or a training) made by '
                  'another commit, a dirty tree or other package versions.')
FLAGS = flags.FLAGS

CONFIG = 'configs/synthetic.py'
# The paper's/release's head, link width and connectivity init and lr, in place of the
# short-run settings of `config_lib.use_cpu_sized_model` (see its docstring).
PAPER_SETTINGS = ('--config.model.affine_anchor=identity', '--config.model.thick=1e-3',
                  '--config.model.connectivity_init_mean=-4',
                  '--config.model.connectivity_init_std=1',
                  '--config.optim.connectivity_lr_multiplier=512')
METHODS = (  # (key, name, config argument, extra overrides)
    ('ppl', 'PPL (memory prior)', CONFIG, ()),
    ('no_memory', 'no memory (AutoLink-like)', CONFIG + ':variant=rand_train-rand_train', ()),
    # The paper's reconstruction context in place of the release's masked frame.
    ('ppl_reference_frame', 'PPL, paper context (reference frame)', CONFIG,
     ('--config.model.context=reference_frame',)),
)
PAPER_METHOD = ('paper_settings', 'PPL, paper head/link/W settings', CONFIG, PAPER_SETTINGS)
RANDOM_KEY, CENTER_KEY = 'random_0.3', 'center_8'


def _methods():
  return METHODS + ((PAPER_METHOD,) if FLAGS.paper_settings else ())


def _train_command(config_arg, overrides, workdir, seed):
  command = [sys.executable, '-m', 'ppl_jax.main', f'--config={config_arg}',
             f'--workdir={workdir}', f'--config.seed={seed}', *overrides]
  if FLAGS.steps:
    command.append(f'--config.num_train_steps={FLAGS.steps}')
  return command


def _train(config_arg, overrides, workdir, seed):
  """Runs training unless the final checkpoint exists; returns (command, seconds)."""
  from ppl_jax import config as config_lib, workdir as workdir_lib  # pylint: disable=g-import-not-at-top
  command = _train_command(config_arg, overrides, workdir, seed)
  final = FLAGS.steps or config_lib.load_config_file(config_arg).num_train_steps
  try:
    done = final in workdir_lib.checkpoint_steps(workdir)
  except FileNotFoundError:
    done = False
  if done and not FLAGS.retrain:
    print(f'{workdir}: checkpoint {final} exists, not retraining', flush=True)
    return command, None
  if os.path.exists(workdir):
    shutil.rmtree(workdir)
  print('+ ' + ' '.join(command), flush=True)
  start = time.time()
  subprocess.run(command, check=True)
  return command, time.time() - start


def _evaluate_untrained(workdir, seed):
  """evaluate_run on the initial state of the default config (no checkpoint needed)."""
  from ppl_jax import config as config_lib, evaluate, inference, sharding, train_state  # pylint: disable=g-import-not-at-top
  config = config_lib.load_config_file(CONFIG)
  config.seed = seed
  layout = train_state.state_layout(config, sharding.make_mesh())
  restored = inference.from_state(config, workdir, layout, layout.init(), step=0, steps=[0])
  out = os.path.join(workdir, 'eval')
  if os.path.exists(out):
    shutil.rmtree(out)
  os.makedirs(out)
  return evaluate.evaluate_run(restored, out, max_eval_frames=FLAGS.max_eval_frames)


def _report(workdir, run_evaluation):
  """workdir's eval/report.json under --reuse_reports (when there is one), else a fresh one."""
  from ppl_jax import provenance  # pylint: disable=g-import-not-at-top
  path = os.path.join(workdir, 'eval', 'report.json')
  if FLAGS.reuse_reports and os.path.exists(path):
    with open(path) as f:
      report = json.load(f)
    code = provenance.current()
    for key in ('provenance', 'training_provenance'):
      if not provenance.same_code(report.get(key), code):
        raise SystemExit(
            f'{path}: its {key} ({report.get(key)}) is not the current clean commit with '
            f'the same packages ({code}); rerun without --reuse_reports (or --retrain).')
    print(f'{workdir}: reusing {path}', flush=True)
    return report
  return run_evaluation()


def _row(report):
  results = report['results']
  occlusion = results['occlusion']
  random = occlusion[RANDOM_KEY]['details']['per_iteration']
  center = occlusion[CENTER_KEY]['details']['per_iteration']
  composite = results['occlusion_composite']
  edges = results['prior_edges']
  return {
      'matched': results['matched_error']['value'],
      'regression': results['regression']['value'],
      'regression_protocol': results['regression']['protocol'],
      'mean_pose': results['mean_pose_baseline']['value'],
      'random_first': random[0], 'random_last': random[-1], 'random_curve': random,
      'center_first': center[0], 'center_last': center[-1],
      'edge_precision': edges['details']['precision'] if 'details' in edges else None,
      'edge_recall': edges['details']['recall'] if 'details' in edges else None,
      'occlusion': {k: v['details']['per_iteration'] for k, v in occlusion.items()},
      'composite_random_last': composite[RANDOM_KEY]['details']['per_iteration'][-1],
      'composite_center_last': composite[CENTER_KEY]['details']['per_iteration'][-1],
      'composite': {k: v['details']['per_iteration'] for k, v in composite.items()},
  }


def _fmt(values):
  values = [v for v in values if v is not None]
  if not values:
    return 'n/a'
  if len(values) == 1:
    return f'{values[0]:.2f}'
  return f'{np.mean(values):.2f} ± {np.std(values):.2f}'


def _markdown(rows, commands, seeds, durations):
  from ppl_jax import config as config_lib  # pylint: disable=g-import-not-at-top
  num_parts = config_lib.load_config_file(CONFIG).model.num_parts
  lines = [
      '# Results on the synthetic benchmark', '',
      f'Written by `python benchmarks/synthetic_results.py --seeds={",".join(seeds)}'
      + (' --reuse_reports' if FLAGS.reuse_reports else '') + '` '
      f'on {time.strftime("%Y-%m-%d")}; every number below is read from the runs\' '
      '`eval/report.json` files. Test split: the 8 held-out synthetic videos '
      '(32 frames each, figures and backgrounds never seen in training).', '',
      'Protocols (SPEC section 4):',
      f'- **matched**: min-cost-flow matching of the N={num_parts} keypoints to the 15 '
      'joints on '
      'the test split, true L2 in units of the image side x 100;',
      '- **regression**: linear regression with bias per (joint, coordinate) from the '
      '2N keypoint coordinates, fitted on labelled training frames, mean L2 on test in % '
      'of the image size;',
      '- **occlusion**: iterative inference (4 iterations) on masked test frames, the '
      'matched error (assignment fixed on clean frames) at the first and the last '
      'iteration (0 and 3); "composite loop" is our variant in which each iteration\'s '
      'input is the masked frame with only its masked pixels taken from I_recon '
      '(`iterative.make_iterative_inference(next_input=\'composite\')`);',
      '- **edges**: learned connectivity against the true skeleton after matching.', '',
      'PPL is `configs/synthetic.py`, which reconstructs I from I itself with 80% of its '
      '8 px blocks masked (the release\'s context); "paper context" reconstructs it from '
      'another frame of the same video (the paper\'s). Iterative inference gives a '
      'masked-context model the original frame under such a block mask as its reference.',
      '',
      f'Mean ± std over seeds {", ".join(seeds)} where there is more than one.', '',
      '| method | matched | regression | RandomMasking 0.3: first → last iteration | '
      'CenterMasking 8x8: first → last iteration | composite loop, last iteration: '
      'RandomMasking 0.3 / CenterMasking 8x8 | edge precision / recall |',
      '|---|---|---|---|---|---|---|']
  for key, name in [('mean_pose', 'mean training pose')] + [
      (k, n) for k, n, _, _ in _methods()] + [('untrained', 'untrained PPL')]:
    if key == 'mean_pose':
      value = _fmt([r['mean_pose'] for r in rows['ppl']])
      lines.append(f'| {name} | {value} | {value}\u00b9 | | | | |')
      continue
    rs = rows[key]
    lines.append(
        f'| {name} | {_fmt([r["matched"] for r in rs])} | '
        f'{_fmt([r["regression"] for r in rs])} | '
        f'{_fmt([r["random_first"] for r in rs])} → {_fmt([r["random_last"] for r in rs])} | '
        f'{_fmt([r["center_first"] for r in rs])} → {_fmt([r["center_last"] for r in rs])} | '
        f'{_fmt([r["composite_random_last"] for r in rs])} / '
        f'{_fmt([r["composite_center_last"] for r in rs])} | '
        f'{_fmt([r["edge_precision"] for r in rs])} / {_fmt([r["edge_recall"] for r in rs])} |')
  lines += ['', '\u00b9 the mean pose is matched like the keypoints; its regression '
            'counterpart (bias only) is the same pose.', '',
            'Per seed, PPL against the aims (matched error below 0.5x the mean pose\'s; '
            'iterative inference at RandomMasking 0.3 ending lower than its iteration 0):', '']
  for seed, ppl in zip(seeds, rows['ppl']):
    lines.append(
        f'- seed {seed}: matched {ppl["matched"]:.2f} = '
        f'{ppl["matched"] / ppl["mean_pose"]:.2f}x the mean pose\'s '
        f'{ppl["mean_pose"]:.2f}, regression {ppl["regression"] / ppl["mean_pose"]:.2f}x; '
        f'RandomMasking 0.3 from {ppl["random_first"]:.2f} to {ppl["random_last"]:.2f} ('
        + ('lower' if ppl['random_last'] < ppl['random_first'] else 'not lower') + ').')
  ppl = rows['ppl'][0]
  lines += ['', '## Occlusion curves (PPL, first seed)', '',
            'Matched error per iteration of iterative inference (iteration 0 is the '
            'single-pass estimate on the masked frame).', '',
            '| masking | ' + ' | '.join(f'it. {i}' for i in range(len(ppl['random_curve'])))
            + ' |', '|---|' + '---|' * len(ppl['random_curve'])]
  for name, curve in rows['ppl'][0]['occlusion'].items():
    lines.append(f'| {name} | ' + ' | '.join(f'{v:.2f}' for v in curve) + ' |')
  for name, curve in rows['ppl'][0]['composite'].items():
    lines.append(f'| {name}, composite loop | ' + ' | '.join(f'{v:.2f}' for v in curve)
                 + ' |')
  if FLAGS.figures:
    lines += ['', '## Figures (PPL, first seed)', '']
    for name in ('pose_overlays', 'prior', 'occlusion_random_0.3',
                 'error_vs_iteration_random', 'error_vs_iteration_center'):
      lines += [f'![{name}]({FLAGS.figures}/{name}.png)', '']
  lines += ['## Commands', '', '```']
  for command, seconds in zip(commands, durations):
    text = ' '.join(command[1:])  # without the interpreter path
    took = f'  # {seconds / 60:.1f} min' if seconds else '  # reused'
    lines.append(f'python3 {text}{took}')
  lines += ['```', '', 'Untrained PPL: the initial state of `configs/synthetic.py` with the '
            'same seed, evaluated by `ppl_jax.evaluate.evaluate_run` (no training).', '']
  return '\n'.join(lines)


def main(argv):
  del argv
  from ppl_jax import evaluate  # pylint: disable=g-import-not-at-top
  rows = {key: [] for key, _, _, _ in _methods()}
  rows['untrained'] = []
  commands, durations = [], []
  for seed in FLAGS.seeds:
    for key, _, config_arg, overrides in _methods():
      workdir = os.path.join(FLAGS.root, f'{key}-seed{seed}')
      command, seconds = _train(config_arg, overrides, workdir, int(seed))
      commands.append(command)
      durations.append(seconds)
      report = _report(workdir, lambda: evaluate.evaluate(
          workdir, max_eval_frames=FLAGS.max_eval_frames))
      rows[key].append(_row(report))
      print(f'{key} seed {seed}: matched {rows[key][-1]["matched"]:.2f}', flush=True)
      if key == 'ppl' and seed == FLAGS.seeds[0] and FLAGS.figures:
        os.makedirs(FLAGS.figures, exist_ok=True)
        for name, path in report['figures'].items():
          shutil.copy(os.path.join(workdir, 'eval', path),
                      os.path.join(FLAGS.figures, f'{name}.png'))
    untrained = os.path.join(FLAGS.root, f'untrained-seed{seed}')
    report = _report(untrained, lambda: _evaluate_untrained(untrained, int(seed)))
    rows['untrained'].append(_row(report))
  with open(FLAGS.out, 'w') as f:
    f.write(_markdown(rows, commands, FLAGS.seeds, durations))
  with open(FLAGS.json, 'w') as f:
    json.dump({'seeds': FLAGS.seeds, 'rows': rows,
               'commands': [' '.join(c[1:]) for c in commands]}, f, indent=2)
  print(f'Wrote {FLAGS.out}', flush=True)


if __name__ == '__main__':
  sys.path.insert(0, os.getcwd())
  app.run(main)
