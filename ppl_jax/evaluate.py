"""Evaluates a trained PPL run: `python -m ppl_jax.evaluate --workdir=DIR`.

Restores the latest checkpoint of DIR (the config defaults to DIR/config.json,
which training writes; --config=configs/x.py overrides it) and writes DIR/eval/:
  report.json   every number with its protocol, units, split and checkpoint step:
                - matched_error: min-cost-flow matched L2 on the 'test' split (SPEC 4)
                - mean_pose_baseline: the training split's mean ground-truth pose,
                  matched the same way, on 'test'
                - regression: the dataset's regression protocol
                  (`regression.regression_for_dataset`), fitted on 'train_eval'
                  labelled frames and evaluated on 'test'
                - occlusion/<masking>: iterative inference (4 iterations) under
                  RandomMasking (0 = clean, 0.1-0.4) and CenterMasking (4-12
                  patches), error per iteration with the assignment matched on
                  clean frames (paper Figs. 6-7)
                - occlusion_identity_recall/<masking>: the same loop with the memory's
                  recall replaced by the identity (clean, RandomMasking 0.3,
                  CenterMasking 8): whether the memory or the loop moves the poses
                - occlusion_composite/<masking>: the sweeps of `occlusion` with the
                  'composite' loop (ours): each iteration's input is the occluded frame
                  with only its occluded pixels replaced by I_recon
                - occlusion_composite_identity_recall/<masking>: the composite loop with
                  the recall replaced by the identity (the maskings of
                  occlusion_identity_recall): whether the memory helps that loop
                - memory_recall: matched error of T'_recon = recall(T') of the clean
                  test estimates, its distance to T', and codebook use per bank (the
                  fraction of tokens used, perplexity), `evaluation.memory_diagnostics`
                - prior_edges: connectivity edge precision / recall against the
                  source's ground-truth skeleton (when it has one)
                - prior_drift: movement of T and W between the kept checkpoints
                - part_coverage: joints with one keypoint within 3% of the image
                  side on >= 80% of test frames (`evaluation.discovery`)
                - keypoint_attachment: keypoints that stay within 3% of the image
                  side of one fixed point of one bone (when the source has a skeleton);
                  details.per_video_mean: the same count within each video, averaged
                - contrast_inversion_shift: how far T' moves when the test frames are
                  contrast-inverted (-I), `evaluation.discovery.inversion_shift`
                - heatmap_reliance: L1 of the reconstruction with S zeroed over
                  with S, minus 1, on test frames with training-style references
                - provenance / training_provenance: git commit and package versions
                  of this evaluation and of the training (WORKDIR/provenance.json)
  report.md     a short summary embedding the figures
  figures/*.png pose overlays, learned prior, occlusion strips, error against
                iteration for both sweeps, prior evolution over the kept checkpoints.
Everything is written to a temporary folder first and moved into place at the
end, so a failed run leaves no partial DIR/eval. Single-process (one host).

Errors are L2 distances in units of the image side x 100 unless a protocol says
otherwise (Taichi: pixels at 256; regression on other datasets: % of image size).
This driver evaluates all test frames (or --max_eval_frames of them);
config.eval_max_batches, which limits training's end-of-run evaluation, is not used.
"""

import json
import os
from typing import Any, Dict, Optional

from absl import flags
from absl import logging
import jax
import ml_collections
from ml_collections import config_flags
import numpy as np

from ppl_jax import cli
from ppl_jax import inference
from ppl_jax import input_pipeline
from ppl_jax import provenance
from ppl_jax import workdir as workdir_lib
from ppl_jax.data import base
from ppl_jax.evaluation import discovery
from ppl_jax.evaluation import figures
from ppl_jax.evaluation import iterative
from ppl_jax.evaluation import matching
from ppl_jax.evaluation import memory_diagnostics
from ppl_jax.evaluation.mean_pose import mean_training_pose
from ppl_jax.evaluation import occlusion
from ppl_jax.evaluation import prior_quality
from ppl_jax.evaluation import regression
from ppl_jax.evaluation.strict_json import jsonable

MATCHING_PROTOCOL = 'min_cost_flow_matching'
MEAN_POSE_PROTOCOL = 'mean_training_pose_min_cost_flow_matching'
DRIFT_PROTOCOL = 'prior_drift_between_checkpoints'
IMAGE_SIDE_UNITS = 'L2 / image size x 100'
STRIP_MASKINGS = (occlusion.RandomMasking(0.3), occlusion.CenterMasking(8))


# --- evaluation --------------------------------------------------------------

def _entry(result: regression.ProtocolResult, *, split: str, step: int,
           **extra) -> Dict[str, Any]:
  return jsonable({'protocol': result.protocol, 'value': result.value,
                   'units': result.units, 'split': split, 'checkpoint_step': step,
                   **extra, 'details': result.details})


def _skipped(reason: str, **extra) -> Dict[str, Any]:
  logging.warning('Skipped: %s', reason)
  return {'skipped': reason, **extra}


def _matched(predicted, keypoints, visible) -> matching.MatchResult:
  # [-1, 1] spans the image side twice: halve to get units of the image side.
  return matching.matched_error(predicted / 2, keypoints / 2, visible)


def evaluate_run(restored: inference.Restored, out_dir: str, *, max_eval_frames: int = 0,
                 max_fit_frames: int = 0, skip_occlusion: bool = False,
                 skip_regression: bool = False, num_iterations: int = 4
                 ) -> Dict[str, Any]:
  """Computes the report of the module docstring and writes it with its figures
  into `out_dir` (which must exist). Returns the report."""
  config, step = restored.config, restored.step
  figure_dir = os.path.join(out_dir, 'figures')
  os.makedirs(figure_dir, exist_ok=True)
  results, figure_paths = {}, {}

  def figure(name):
    figure_paths[name] = os.path.join('figures', f'{name}.png')
    return os.path.join(out_dir, figure_paths[name])

  # Clean test frames: matched error (fixes the assignment for everything else).
  test_source = input_pipeline.build_source(config.data, 'test')
  test = inference.predict_split(restored, 'test', max_eval_frames, source=test_source)
  match = _matched(test.predicted, test.keypoints, test.visible)
  results['matched_error'] = jsonable({
      'protocol': MATCHING_PROTOCOL, 'value': 100 * match.error,
      'units': IMAGE_SIDE_UNITS, 'split': 'test', 'checkpoint_step': step,
      'num_frames': len(test.predicted), 'num_labels': match.num_labels,
      'details': {'assignment': match.assignment, 'per_joint': 100 * match.per_joint}})

  coverage = discovery.part_coverage(test.predicted / 2, test.keypoints / 2, test.visible)
  results['part_coverage'] = jsonable({
      'protocol': 'part_coverage', 'value': coverage.num_covered,
      'units': f'joints of {len(coverage.covered)} with a keypoint within '
               f'{discovery.COVERAGE_RADIUS:g} of the image side on >= '
               f'{discovery.COVERAGE_MIN_FRACTION:g} of test frames',
      'split': 'test', 'checkpoint_step': step,
      'details': {'covered': coverage.covered, 'best_fraction': coverage.best_fraction,
                  'keypoint': coverage.keypoint}})
  if test_source.skeleton is not None:
    attachment = discovery.keypoint_attachment(test.predicted / 2, test.keypoints / 2,
                                               test.visible, test_source.skeleton)
    results['keypoint_attachment'] = jsonable({
        'protocol': 'keypoint_attachment', 'value': attachment.num_attached,
        'units': f'keypoints of {len(attachment.attached)} within '
                 f'{discovery.COVERAGE_RADIUS:g} of the image side (mean over test frames) '
                 'of a fixed point of one bone',
        'split': 'test', 'checkpoint_step': step,
        'details': {'distance': attachment.distance, 'bone': attachment.bone,
                    'fraction': attachment.fraction,
                    'per_video_mean': discovery.per_video_attachment(
                        test.predicted / 2, test.keypoints / 2, test.visible,
                        test_source.skeleton, test.video)}})
  else:
    results['keypoint_attachment'] = _skipped('the test source has no skeleton')
  results['memory_recall'] = _memory_recall(restored, test)
  shift = discovery.inversion_shift(restored.model, restored.variables,
                                    _first_test_images(restored, test_source,
                                                       min(max_eval_frames or 64, 64)),
                                    batch_size=config.eval_batch_size)
  results['contrast_inversion_shift'] = jsonable({
      'protocol': 'contrast_inversion_shift', 'value': 100 * float(shift.mean()),
      'units': 'mean distance T\'(-I) to T\'(I), image side x 100', 'split': 'test',
      'checkpoint_step': step, 'details': {'per_keypoint': 100 * shift}})
  results['heatmap_reliance'] = jsonable({
      'protocol': 'heatmap_reliance', 'value': _heatmap_reliance(restored, test_source),
      'units': 'L1(recon with S = 0) / L1(recon) - 1', 'split': 'test',
      'checkpoint_step': step})

  train_source = input_pipeline.build_source(config.data, 'train')
  try:
    mean_pose = mean_training_pose(train_source)
  except ValueError as e:  # a training split without labels
    results['mean_pose_baseline'] = _skipped(f'mean-pose baseline: {e}')
  else:
    baseline = _matched(np.broadcast_to(mean_pose, test.keypoints.shape),
                        test.keypoints, test.visible)
    results['mean_pose_baseline'] = jsonable({
        'protocol': MEAN_POSE_PROTOCOL, 'value': 100 * baseline.error,
        'units': IMAGE_SIDE_UNITS, 'split': 'test', 'fit_split': 'train',
        'checkpoint_step': step, 'num_frames': len(test.predicted),
        'num_labels': baseline.num_labels})

  if skip_regression:
    results['regression'] = _skipped('--skip_regression')
  else:
    try:
      fit = inference.predict_split(restored, 'train_eval', max_fit_frames)
    except ValueError as e:  # no labelled training frames
      results['regression'] = _skipped(f'regression protocol: {e}')
    else:
      result = regression.regression_for_dataset(
          config.data.name, (fit.predicted, fit.keypoints, fit.visible),
          (test.predicted, test.keypoints, test.visible))
      results['regression'] = _entry(result, split='test', step=step,
                                     fit_split='train_eval',
                                     num_fit_frames=len(fit.predicted),
                                     num_frames=len(test.predicted))

  prior, connectivity = prior_quality.extract_prior(restored.model,
                                                    restored.variables)
  skeleton = test_source.skeleton
  if skeleton is None:
    results['prior_edges'] = _skipped('the test source has no ground-truth skeleton')
  else:
    try:
      scores = prior_quality.edge_precision_recall(connectivity, match.assignment,
                                                   skeleton)
    except ValueError as e:
      results['prior_edges'] = _skipped(str(e))
    else:
      results['prior_edges'] = _entry(scores.as_result(), split='test', step=step,
                                      predicted_edges=scores.predicted,
                                      skeleton_edges=scores.ground_truth,
                                      correct_edges=scores.correct)

  priors, connectivities = [], []
  for kept in restored.steps:
    variables = restored.variables if kept == step else restored.restore_step(kept)
    t, w = prior_quality.extract_prior(restored.model, variables)
    priors.append(t)
    connectivities.append(w)
  if len(priors) > 1:
    drift = prior_quality.prior_drift(np.stack(priors), np.stack(connectivities))
    results['prior_drift'] = jsonable({
        'protocol': DRIFT_PROTOCOL, 'steps': restored.steps,
        'units': 'keypoint: mean L2 of T in [-1, 1]; connectivity: mean |dW| over i<j',
        'checkpoint_step': step, **drift})
  else:
    results['prior_drift'] = _skipped(f'one checkpoint kept ({restored.steps})')

  figures.save_pose_overlays(test.first_images, test.first_predicted, connectivity,
                             figure('pose_overlays'))
  figures.save_prior(prior, connectivity, figure('prior'))
  figures.save_prior_evolution(np.stack(priors), np.stack(connectivities),
                               figure('prior_evolution'),
                               labels=[f'step {s}' for s in restored.steps])

  if skip_occlusion:
    results['occlusion'] = _skipped('--skip_occlusion')
  elif config.data.image_size % occlusion.GRID:
    results['occlusion'] = _skipped(
        f'config.data.image_size={config.data.image_size} is not divisible by the '
        f'{occlusion.GRID} x {occlusion.GRID} occlusion grid')
  else:
    results['occlusion'] = _occlusion(restored, test_source, test, match.assignment,
                                      connectivity, max_eval_frames, num_iterations,
                                      figure)
    results['occlusion_identity_recall'] = _identity_recall_sweep(
        restored, test_source, match.assignment, max_eval_frames, num_iterations)
    results['occlusion_composite'] = _occlusion(
        restored, test_source, test, match.assignment, connectivity, max_eval_frames,
        num_iterations, figure, next_input='composite')
    results['occlusion_composite_identity_recall'] = _identity_recall_sweep(
        restored, test_source, match.assignment, max_eval_frames, num_iterations,
        next_input='composite')

  training_provenance = workdir_lib.read_provenance(restored.workdir)
  report = {'workdir': os.fspath(workdir_lib.path(restored.workdir)), 'dataset': config.data.name,
            'provenance': provenance.current(), 'training_provenance': training_provenance,
            'checkpoint_step': step, 'kept_steps': restored.steps,
            'num_parts': config.model.num_parts, 'results': results,
            'figures': figure_paths}
  with open(os.path.join(out_dir, 'report.json'), 'w') as f:
    json.dump(report, f, indent=2, allow_nan=False)
  with open(os.path.join(out_dir, 'report.md'), 'w') as f:
    f.write(_markdown(report))
  return report


def _first_test_images(restored: inference.Restored, source: base.VideoSource,
                       max_frames: int = 64) -> np.ndarray:
  """The first `max_frames` labelled test frames [F, S, S, 3] in [-1, 1]."""
  return np.concatenate([np.asarray(b['image'])[np.asarray(b['valid'], bool)]
                         for b in inference.eval_batches(restored.config, source, max_frames)])


def _memory_recall(restored: inference.Restored, test: inference.Predictions
                   ) -> Dict[str, Any]:
  """The memory's recall T'_recon of the clean test estimates T' (`memory_diagnostics`):
  its own matched error against the ground truth, its distance to T', codebook use."""
  recalled, indices = memory_diagnostics.recall_and_indices(
      restored.model, restored.variables, test.predicted,
      batch_size=restored.config.eval_batch_size)
  match = _matched(recalled, test.keypoints, test.visible)
  usage = memory_diagnostics.codebook_usage(indices, restored.config.model.memory_tokens)
  # [-1, 1] spans the image side twice: x 100 / 2 gives units of the image side x 100.
  to_estimate = 50.0 * np.linalg.norm(recalled - test.predicted, axis=-1).mean()
  return jsonable({
      'protocol': 'memory_recall_min_cost_flow_matching', 'value': 100 * match.error,
      'units': IMAGE_SIDE_UNITS, 'split': 'test', 'checkpoint_step': restored.step,
      'details': {'distance_to_estimate': float(to_estimate),
                  'used_fraction': usage['used_fraction'],
                  'perplexity': usage['perplexity'],
                  'mean_used_fraction': float(usage['used_fraction'].mean()),
                  'mean_perplexity': float(usage['perplexity'].mean()),
                  'tokens_per_bank': restored.config.model.memory_tokens}})


def _heatmap_reliance(restored: inference.Restored, source: base.VideoSource,
                      max_frames: int = 64) -> float:
  """`discovery.heatmap_reliance` on the first `max_frames` labelled test frames, each with
  the reference the decoder had in training: the frame under a block mask ('masked_self')
  or the frame min_frame_gap later (earlier at a video's end)."""
  config = restored.config
  keep_fn = _reference_keep(config)
  images, references = [], []
  for index, batch in enumerate(inference.eval_batches(config, source, max_frames)):
    valid = np.asarray(batch['valid'], bool)
    image = np.asarray(batch['image'])[valid]
    if keep_fn is not None:
      reference = image * keep_fn(index, len(image))[..., None]
    else:
      gap = max(1, config.data.min_frame_gap)
      frames = []
      for video, t in zip(batch['video'][valid], batch['frame'][valid]):
        n = source.num_frames(int(video))
        t_ref = t + gap if t + gap < n else max(0, t - gap)
        frames.append(input_pipeline.to_float(input_pipeline.resize_uint8(
            source.frame(int(video), int(t_ref)), config.data.image_size)))
      reference = np.stack(frames)
    images.append(image)
    references.append(reference)
  return discovery.heatmap_reliance(restored.model, restored.variables,
                                    np.concatenate(images), np.concatenate(references))


def _reference_keep(config):
  """None, or for 'masked_self' models fn(batch_index, batch_size) -> keep masks
  [B, H, W]: the decoder's training context (I with blocks zeroed), seeded per batch."""
  if config.model.context != 'masked_self':
    return None

  def keep(batch_index, batch_size):
    rng = np.random.default_rng((config.seed, batch_index))
    return np.stack([input_pipeline.block_mask(
        config.data.image_size, config.model.mask_grid, config.model.mask_ratio, rng,
        sampling=config.model.mask_sampling) for _ in range(batch_size)])
  return keep


def _occlusion(restored, source, test, assignment, connectivity, max_frames,
               num_iterations, figure, next_input: str = 'recon') -> Dict[str, Any]:
  """The two sweeps, their error-vs-iteration figures and one occlusion strip each, with
  `iterative.make_iterative_inference`'s next_input (figure names say which)."""
  config, step = restored.config, restored.step
  infer = iterative.make_iterative_inference(restored.model, num_iterations=num_iterations,
                                             next_input=next_input)
  label = "" if next_input == "recon" else "_" + next_input
  sweeps = {
      'random': [occlusion.RandomMasking(r, seed=config.seed)
                 for r in (0.0,) + occlusion.PAPER_MASK_RATIOS],
      'center': [occlusion.CenterMasking(s) for s in occlusion.PAPER_MASK_SIZES],
  }
  reference_keep = _reference_keep(config)
  swept = iterative.occlusion_sweep(
      infer, restored.variables, inference.eval_batches(config, source, max_frames),
      [m for ms in sweeps.values() for m in ms], assignment=assignment,
      reference_keep=reference_keep)
  results = {name: _entry(result, split='test', step=step,
                          assignment_from='matched_error (clean test frames)')
             for name, result in swept.items()}
  for sweep, maskings in sweeps.items():
    curves = {(m.ratio if sweep == 'random' else m.size):
              swept[m.name].details['per_iteration'] for m in maskings}
    figures.save_error_vs_iteration(
        curves, figure(f'error_vs_iteration{label}_{sweep}'),
        legend_title='mask ratio' if sweep == 'random' else 'mask size (patches)')

  # Strips on the first test frame; the batch keeps eval_batch_size rows so the
  # compiled inference is reused.
  batch = next(inference.eval_batches(config, source, 1))
  for masking in STRIP_MASKINGS:
    masked = masking(np.asarray(batch['image']), 0)
    keep = None if reference_keep is None else reference_keep(0, len(masked))
    out = jax.device_get(infer(restored.variables, masked, keep,
                               masking.occluded(masked, 0)))
    inputs = np.concatenate([masked[None, 0], np.asarray(out['next_input'])[:-1, 0]])
    figures.save_occlusion_strip(
        inputs, np.asarray(out['keypoints'])[:, 0], connectivity,
        figure(f'occlusion{label}_{masking.name}'), original=test.first_images[0],
        original_keypoints=test.first_predicted[0])
  return results


def _identity_recall_sweep(restored, source, assignment, max_frames, num_iterations,
                           next_input: str = 'recon') -> Dict[str, Any]:
  """The loop (`iterative.make_iterative_inference`'s next_input) with the memory's recall
  replaced by the identity (T'_recon = T') on clean frames, RandomMasking 0.3 and
  CenterMasking 8: next to the loop with the recall, it shows whether the memory or the loop
  moves the poses."""
  config = restored.config
  infer = iterative.make_iterative_inference(restored.model, num_iterations=num_iterations,
                                             recall=False, next_input=next_input)
  swept = iterative.occlusion_sweep(
      infer, restored.variables, inference.eval_batches(config, source, max_frames),
      [occlusion.RandomMasking(0.0, seed=config.seed),
       occlusion.RandomMasking(0.3, seed=config.seed), occlusion.CenterMasking(8)],
      assignment=assignment, reference_keep=_reference_keep(config))
  return {name: _entry(result, split='test', step=restored.step,
                       assignment_from='matched_error (clean test frames)')
          for name, result in swept.items()}


def _fmt(entry: Dict[str, Any]) -> str:
  if 'skipped' in entry:
    return f'skipped: {entry["skipped"]}'
  value = entry['value']
  return f'{value:.3f}' if value is not None else 'n/a'


def _markdown(report: Dict[str, Any]) -> str:
  results = report['results']
  step = report['checkpoint_step']
  lines = [f'# PPL evaluation: {report["dataset"]}, checkpoint step {step}', '',
           f'Workdir `{report["workdir"]}`; kept checkpoints {report["kept_steps"]}; '
           f'N = {report["num_parts"]} keypoints. All numbers are in `report.json` '
           'with their protocol, units and split.', '',
           '| result | protocol | split | value | units |', '|---|---|---|---|---|']
  rows = [(k, results[k]) for k in ('matched_error', 'mean_pose_baseline', 'part_coverage',
                                    'keypoint_attachment', 'contrast_inversion_shift',
                                    'memory_recall',
                                    'heatmap_reliance', 'regression',
                                    'prior_edges')]
  if 'skipped' not in results['occlusion']:
    rows += [(f'occlusion {k} (last iteration)', v)
             for k, v in results['occlusion'].items()]
    rows += [(f'occlusion {k}, recall = identity (last iteration)', v)
             for k, v in results['occlusion_identity_recall'].items()]
    rows += [(f'occlusion {k}, composite input (last iteration)', v)
             for k, v in results['occlusion_composite'].items()]
    rows += [(f'occlusion {k}, composite input, recall = identity (last iteration)', v)
             for k, v in results['occlusion_composite_identity_recall'].items()]
  for name, entry in rows:
    lines.append(f'| {name} | {entry.get("protocol", "")} | {entry.get("split", "")} | '
                 f'{_fmt(entry)} | {entry.get("units", "")} |')
  edges = results['prior_edges']
  if 'skipped' not in edges:
    lines += ['', f'Connectivity edges vs the skeleton: precision '
              f'{edges["details"]["precision"]:.3f}, recall '
              f'{edges["details"]["recall"]:.3f}.']
  drift = results['prior_drift']
  if 'skipped' not in drift:
    lines += ['', f'Prior drift between checkpoints {drift["steps"]}: keypoints '
              f'{drift["keypoint_drift"]}, connectivity {drift["connectivity_drift"]}.']
  lines.append('')
  for name, path in report['figures'].items():
    lines += [f'## {name.replace("_", " ")}', '', f'![{name}]({path})', '']
  return '\n'.join(lines)


def evaluate(workdir: str, config: Optional[ml_collections.ConfigDict] = None, *,
             step: Optional[int] = None, out_dir: Optional[str] = None,
             **kwargs) -> Dict[str, Any]:
  """Restores `workdir` and writes its report into `out_dir` (default DIR/eval),
  atomically: a failed evaluation leaves the previous report. Returns the report.

  kwargs go to `evaluate_run` (max_eval_frames, max_fit_frames, skip_occlusion,
  skip_regression, num_iterations).
  """
  config = workdir_lib.load_config(workdir, config)
  workdir_lib.checkpoint_steps(workdir)   # fails before anything is built or written
  final = workdir_lib.path(out_dir or workdir_lib.eval_dir(workdir))
  if (final.is_dir() and any(final.iterdir())
      and not (final / 'report.json').exists()):
    raise FileExistsError(f'--out_dir={final} exists and holds files other than an '
                          'evaluation report: pass a new or empty folder.')
  restored = inference.restore(config, workdir, step)
  with workdir_lib.staged_folder(os.fspath(final)) as staging:
    report = evaluate_run(restored, staging, **kwargs)
  logging.info('Wrote %s', final / 'report.json')
  return report


FLAGS = flags.FLAGS


def _define_flags():
  flags.DEFINE_string('workdir', None, 'Workdir of a training run (with checkpoints/).')
  config_flags.DEFINE_config_file(
      'config', None, 'Training configuration file (default: WORKDIR/config.json).',
      lock_config=True)
  flags.DEFINE_integer('step', None, 'Checkpoint step to evaluate (default: latest).')
  flags.DEFINE_integer('max_eval_frames', 0,
                       'Evaluate only the first N labelled test frames (0 = all).')
  flags.DEFINE_integer('max_fit_frames', 0, 'Fit the regression protocol on the '
                       "first N labelled 'train_eval' frames (0 = all).")
  flags.DEFINE_bool('skip_occlusion', False, 'Skip the iterative-inference sweeps.')
  flags.DEFINE_bool('skip_regression', False, 'Skip the regression protocol.')
  flags.DEFINE_integer('num_iterations', 4, 'Iterations of iterative inference.')
  flags.DEFINE_string('out_dir', None, 'Folder for the report and figures (default: '
                      'WORKDIR/eval); replaced atomically if it holds an earlier report.')
  flags.mark_flags_as_required(['workdir'])


def main(argv):
  del argv
  report = evaluate(FLAGS.workdir, FLAGS.config, step=FLAGS.step, out_dir=FLAGS.out_dir,
                    max_eval_frames=FLAGS.max_eval_frames,
                    max_fit_frames=FLAGS.max_fit_frames,
                    skip_occlusion=FLAGS.skip_occlusion,
                    skip_regression=FLAGS.skip_regression,
                    num_iterations=FLAGS.num_iterations)
  print(f'Checkpoint step {report["checkpoint_step"]}: matched error '
        f'{report["results"]["matched_error"]["value"]:.3f} '
        f'({IMAGE_SIDE_UNITS}); report in '
        f'{os.path.join(FLAGS.out_dir or workdir_lib.eval_dir(FLAGS.workdir), "report.md")}',
        flush=True)


if __name__ == '__main__':
  _define_flags()
  cli.run(main, 'ppl_jax.evaluate')
