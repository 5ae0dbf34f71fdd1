r"""Iterative inference over seeds: the occlusion issue's acceptance numbers, per seed.

  python benchmarks/occlusion.py --workdirs=workdir/discovery/synthetic --parallel=2
  python benchmarks/occlusion.py --workdirs=workdir/discovery/parts20_reseed05 \
      --json=benchmarks/results/occlusion/reseed05.json

Every `seedK` folder under each --workdirs entry (or the entry itself if it holds
checkpoints/) is a trained run. For each, `python -m ppl_jax.evaluate` (with the sweeps)
writes WORKDIR/eval_occlusion unless a report there was made by the current clean commit with
the same packages. Then per seed, in units of the image side x 100 (matched error, assignment
fixed on clean frames), for the paper's loop ('paper'), the composite loop ('composite') and
the composite loop with the memory's recall replaced by the identity ('composite_identity';
RandomMasking 0.3, CenterMasking 8 and clean frames only):
  - clean: the single pass and the last iteration on clean frames (drift, %);
  - RandomMasking 0.3 and CenterMasking 8: iteration 0, the last iteration, the change (%);
  - RandomMasking 0.3's last iteration over the clean single pass (ratio);
and the memory's own recall (matched error of T'_recon, used token fraction, perplexity),
with median and worst over seeds and the issue's three checks: the last iteration below
iteration 0 on every seed under both maskings and by >= 10% on the median seed; clean drift
within 3% on every seed; RandomMasking 0.3 within 1.15x of the clean single pass on the median
seed. The training commit of each run is printed beside it: a run trained by other code is
evaluated by the current code, and the JSON says so.
"""

import concurrent.futures
import json
import os
import statistics
import subprocess
import sys

from absl import app
from absl import flags

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _REPO not in sys.path:
  sys.path.insert(0, _REPO)

from ppl_jax import provenance  # pylint: disable=g-import-not-at-top,wrong-import-position

FLAGS = flags.FLAGS


def _define_flags():
  # Defined only when run as a script, so that tests import `row` and `checks` without
  # clashing with other benchmarks' absl flags.
  flags.DEFINE_list('workdirs', [], 'Training workdirs, or folders of seedK workdirs.')
  flags.DEFINE_string('json', '', 'Output JSON (default: none).')
  flags.DEFINE_integer('parallel', 1, 'Evaluations at a time.')
  flags.DEFINE_bool('reevaluate', False, 'Evaluate again even where a current report exists.')

OUT = 'eval_occlusion'
MASKINGS = ('random_0.3', 'center_8')
# Report keys of the loops, and their names here.
LOOP_NAMES = {'occlusion': 'paper', 'occlusion_composite': 'composite',
              'occlusion_composite_identity_recall': 'composite_identity'}
OPTIONAL_LOOPS = ('occlusion_composite_identity_recall',)   # absent from older reports


def _runs(entries):
  runs = []
  for entry in entries:
    if os.path.isdir(os.path.join(entry, 'checkpoints')):
      runs.append(entry)
      continue
    if not os.path.isdir(entry):
      raise SystemExit(f'--workdirs: {entry} is not a folder.')
    seeds = sorted((d for d in os.listdir(entry) if d.startswith('seed') and
                    os.path.isdir(os.path.join(entry, d, 'checkpoints'))),
                   key=lambda d: int(d[4:]) if d[4:].isdigit() else d)
    if not seeds:
      raise SystemExit(f'--workdirs: {entry} has neither checkpoints/ nor seedK/checkpoints/.')
    runs += [os.path.join(entry, d) for d in seeds]
  return runs


def _report(workdir, code):
  path = os.path.join(workdir, OUT, 'report.json')
  if not FLAGS.reevaluate and os.path.isfile(path):
    with open(path) as f:
      report = json.load(f)
    if (provenance.same_code(report.get('provenance'), code)
        and 'skipped' not in report['results']['occlusion']):
      print(f'{workdir}: reusing {path}', flush=True)
      return report
  print(f'{workdir}: evaluating with the occlusion sweeps', flush=True)
  subprocess.run([sys.executable, '-m', 'ppl_jax.evaluate', f'--workdir={workdir}',
                  f'--out_dir={os.path.join(workdir, OUT)}'], check=True, cwd=_REPO,
                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  with open(path) as f:
    return json.load(f)


def _change(first, last):
  return 100.0 * (last - first) / first


def row(report):
  """The per-seed numbers of one evaluation report (a dict of floats and lists)."""
  r = report['results']
  single = r['matched_error']['value']
  out = {'single_pass': single}
  for loop, name in LOOP_NAMES.items():
    if loop in OPTIONAL_LOOPS and loop not in r:
      continue
    clean = r[loop]['random_0']['details']['per_iteration']
    out[f'{name}_clean'] = clean
    out[f'{name}_clean_drift'] = _change(single, clean[-1])
    for masking in MASKINGS:
      curve = r[loop][masking]['details']['per_iteration']
      out[f'{name}_{masking}'] = curve
      out[f'{name}_{masking}_change'] = _change(curve[0], curve[-1])
    out[f'{name}_random_over_clean'] = out[f'{name}_random_0.3'][-1] / single
  identity = r.get('occlusion_identity_recall', {})
  for masking in ('random_0',) + MASKINGS:
    if masking in identity:
      out[f'identity_{masking}'] = identity[masking]['details']['per_iteration']
  recall = r['memory_recall']
  out['memory_recall'] = recall['value']
  out['used_fraction'] = recall['details']['mean_used_fraction']
  out['perplexity'] = recall['details']['mean_perplexity']
  out['tokens_per_bank'] = recall['details']['tokens_per_bank']
  return out


def checks(rows, loop='paper'):
  """The issue's acceptance over seeds for one loop: {name: (value, passed)}."""
  changes = {m: [r[f'{loop}_{m}_change'] for r in rows] for m in MASKINGS}
  drifts = [abs(r[f'{loop}_clean_drift']) for r in rows]
  ratios = [r[f'{loop}_random_over_clean'] for r in rows]
  out = {}
  for m, values in changes.items():
    out[f'{m}: worst change (%) < 0'] = (max(values), max(values) < 0)
    out[f'{m}: median change (%) <= -10'] = (statistics.median(values),
                                             statistics.median(values) <= -10)
  out['clean: worst |drift| (%) <= 3'] = (max(drifts), max(drifts) <= 3)
  out['random_0.3 last / clean single pass, median <= 1.15'] = (
      statistics.median(ratios), statistics.median(ratios) <= 1.15)
  return out


def _curve(values):
  return ' '.join(f'{v:.2f}' for v in values)


def _loops(rows):
  """The loop names that every row has."""
  return [name for name in LOOP_NAMES.values() if all(f'{name}_clean' in r for r in rows)]


def _print(rows):
  for loop in _loops(rows):
    print(f'\n{loop} loop (matched error per iteration, x100 of the side):')
    print(f'{"run":<28} {"single":>6}  {"clean drift":>11}  {"random 0.3":<24} {"%":>6}  '
          f'{"center 8":<24} {"%":>6}  {"r/clean":>7}')
    for r in rows:
      print(f'{r["run"][-28:]:<28} {r["single_pass"]:6.2f}  {r[f"{loop}_clean_drift"]:10.1f}%  '
            f'{_curve(r[f"{loop}_random_0.3"]):<24} {r[f"{loop}_random_0.3_change"]:6.1f}  '
            f'{_curve(r[f"{loop}_center_8"]):<24} {r[f"{loop}_center_8_change"]:6.1f}  '
            f'{r[f"{loop}_random_over_clean"]:7.2f}')
    for name, (value, passed) in checks(rows, loop).items():
      print(f'  {"PASS" if passed else "fail"}  {name}: {value:.2f}')
  print(f'\n{"run":<28} {"recall":>6} {"used":>5} {"perplexity":>10}  trained by')
  for r in rows:
    print(f'{r["run"][-28:]:<28} {r["memory_recall"]:6.2f} {r["used_fraction"]:5.2f} '
          f'{r["perplexity"]:6.2f}/{r["tokens_per_bank"]:<3}  {r["training_commit"]}')


def main(argv):
  del argv
  code = provenance.current_for_results('these reports')
  runs = _runs(FLAGS.workdirs)
  with concurrent.futures.ThreadPoolExecutor(max(1, FLAGS.parallel)) as pool:
    reports = list(pool.map(lambda w: _report(w, code), runs))
  rows = []
  for workdir, report in zip(runs, reports):
    training = report.get('training_provenance') or {}
    rows.append({'run': workdir, **row(report),
                 'training_commit': (training.get('git_commit') or '?')[:7]
                 + (' (dirty)' if training.get('git_dirty') else ''),
                 'trained_by_current_code': provenance.same_code(training, code),
                 'training_provenance': training, 'provenance': report.get('provenance')})
  _print(rows)
  if FLAGS.json:
    os.makedirs(os.path.dirname(os.path.abspath(FLAGS.json)), exist_ok=True)
    with open(FLAGS.json, 'w') as f:
      json.dump({'workdirs': FLAGS.workdirs, 'provenance': code, 'rows': rows,
                 'checks': {loop: {k: {'value': v, 'passed': p}
                                   for k, (v, p) in checks(rows, loop).items()}
                            for loop in _loops(rows)}}, f, indent=2)
    print(f'Wrote {FLAGS.json}')


if __name__ == '__main__':
  _define_flags()
  app.run(main)
