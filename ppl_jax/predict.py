"""Keypoints on any video with a trained PPL: `python -m ppl_jax.predict`.

  python -m ppl_jax.predict --workdir=DIR --video=IN.mp4 --out=OUTDIR \
      [--config=configs/x.py] [--labels=CollectedData.csv]

The config defaults to DIR/config.json (written by training). The video is decoded
sequentially (PyAV), in batches of --batch_size frames resized to
config.data.image_size, so memory does not grow with its length (only the
per-frame keypoints, N x 3 floats a frame, are kept until the CSV is written).
Writes into OUTDIR:
  <video stem>_ppl.csv          DeepLabCut layout (scorer 'ppl_jax', body parts
                                kp00.., columns x, y, likelihood), one row per
                                frame, pixels of the original frame (pixel centres
                                at integers).
  <video stem>_ppl.h5           the same in DeepLabCut's HDF5 layout.
  <video stem>_ppl.slp / .nwb   with --formats=...,slp,nwb: SLEAP labels and NWB
                                (ndx-pose), with the learned skeleton
                                (`ppl_jax.data.pose_files`).
  <video stem>_ppl_overlay.mp4  the video with the keypoints and the links drawn,
                                link opacity w_ij / max(W) (--nooverlay: none).
  labels_eval.json              with --labels (see `evaluate_labels`).

Confidence ('likelihood' column): how well the learned pose memory reproduces
the keypoint, exp(-||T'_i - T'_recon,i|| / scale), with T'_recon = recall(T')
(the keypoint configuration encoded, quantised to the memory's tokens and
decoded) and the distance in units of the image side; scale = --confidence_scale
(default 0.05: a keypoint the memory moves by 5% of the image side gets
exp(-1) = 0.37). It is 1 for a configuration the prior knows exactly and falls
for implausible ones; it is not a calibrated probability.

Outputs are written under temporary names and renamed at the end: bad input (no
checkpoint, an unreadable video, labels naming missing images) fails before any
file is written, and a failure later removes the temporary files.
"""

import dataclasses
import json
import os
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

from absl import flags
import jax
import jax.numpy as jnp
import ml_collections
from ml_collections import config_flags
import numpy as np
from tqdm import tqdm

from ppl_jax import cli
from ppl_jax import inference
from ppl_jax import input_pipeline
from ppl_jax import workdir as workdir_lib
from ppl_jax.data import base
from ppl_jax.data import dlc
from ppl_jax.data import pose_files
from ppl_jax.data import video
from ppl_jax.data.errors import DataError
from ppl_jax.evaluation import blob_tracker
from ppl_jax.evaluation import figures
from ppl_jax.evaluation import prior_quality
from ppl_jax.evaluation import regression
from ppl_jax.evaluation.strict_json import jsonable
from ppl_jax.models.ppl import PPL

SCORER = 'ppl_jax'
LABELS_PROTOCOL = 'linear_regression_with_bias_heldout_labelled_frames'
_DEFAULT_FPS = 30.0


def bodypart_names(num_parts: int) -> List[str]:
  return [f'kp{i:02d}' for i in range(num_parts)]


def make_infer(model: PPL) -> Callable:
  """Jitted fn(variables, images [B, S, S, 3] in [-1, 1]) -> (T' [B, N, 2], conf [B, N]).

  conf = exp(-||T' - recall(T')|| / 2 / scale) (see the module docstring); scale is
  the last argument, in units of the image side.
  """
  def infer(variables, images, scale):
    keypoints, _ = model.apply(variables, images, train=False, method=PPL.estimate)
    recalled = model.apply(variables, keypoints, method=PPL.recall)
    # [-1, 1] spans the image side twice.
    distance = jnp.linalg.norm(keypoints - recalled, axis=-1) / 2.0
    return keypoints, jnp.exp(-distance / scale)
  return jax.jit(infer)


def _model_input(frames: List[np.ndarray], size: int, batch_size: int) -> np.ndarray:
  """uint8 frames -> float32 [batch_size, S, S, 3] in [-1, 1], zero-padded rows
  after the frames (a fixed batch shape compiles once)."""
  images = np.zeros((batch_size, size, size, 3), np.float32)
  for i, frame in enumerate(frames):
    images[i] = input_pipeline.to_float(input_pipeline.resize_uint8(frame, size))
  return images


def run_model(restored: inference.Restored, frames: Iterator[np.ndarray], *,
              batch_size: int, confidence_scale: float, infer: Optional[Callable] = None
              ) -> Iterator[Tuple[np.ndarray, np.ndarray, np.ndarray]]:
  """Yields (frame uint8 [H, W, 3], keypoints [N, 2] pixels of that frame,
  confidence [N]) per input frame, in order, running the model per batch."""
  infer = infer or make_infer(restored.model)
  size = restored.config.data.image_size
  scale = np.float32(confidence_scale)

  def flush(pending):
    keypoints, confidence = jax.device_get(infer(
        restored.variables, _model_input(pending, size, batch_size), scale))
    for frame, points, conf in zip(pending, keypoints, confidence):
      height, width = frame.shape[:2]
      yield frame, base.normalized_to_pixels(points, width, height), conf

  pending = []
  for frame in frames:
    pending.append(frame)
    if len(pending) == batch_size:
      yield from flush(pending)
      pending = []
  if pending:
    yield from flush(pending)


@dataclasses.dataclass
class _Outputs:
  """Temporary -> final paths; `commit` renames, `discard` removes the temporaries."""
  out_dir: str
  created_dir: bool
  paths: Dict[str, str] = dataclasses.field(default_factory=dict)

  def temp(self, name: str) -> str:
    final = os.path.join(self.out_dir, name)
    # The extension stays last: the video writer picks its codec from it.
    self.paths[final] = os.path.join(self.out_dir, f'.tmp-{os.getpid()}-{name}')
    return self.paths[final]

  def commit(self) -> List[str]:
    for final, temp in self.paths.items():
      os.replace(temp, final)
    return list(self.paths)

  def discard(self) -> None:
    for temp in self.paths.values():
      if os.path.exists(temp):
        os.remove(temp)
    if self.created_dir and not os.listdir(self.out_dir):
      os.rmdir(self.out_dir)


def predict_video(restored: inference.Restored, reader: video.VideoReader,
                  pose_paths: Dict[str, str], overlay_path: Optional[str], *,
                  batch_size: int = 16, max_frames: int = 0,
                  confidence_scale: float = 0.05) -> int:
  """Writes the pose files ({format: path}, `pose_files.FORMATS`) and the overlay video
  of `reader`'s frames; returns the number of frames. Frames stream through; the video
  is never held whole."""
  num_frames = reader.num_frames if not max_frames else min(max_frames, reader.num_frames)
  _, connectivity = prior_quality.extract_prior(restored.model, restored.variables)
  keypoints = np.zeros((num_frames, restored.config.model.num_parts, 2), np.float32)
  confidence = np.zeros((num_frames, restored.config.model.num_parts), np.float32)
  frames = (reader.frame(i) for i in range(num_frames))
  results = run_model(restored, frames, batch_size=batch_size,
                      confidence_scale=confidence_scale)
  progress = tqdm(results, total=num_frames, unit='frame',
                  desc=os.path.basename(reader.path))

  def overlay_frames():
    for i, (frame, points, conf) in enumerate(progress):
      keypoints[i], confidence[i] = points, conf
      yield figures.draw_pose_on_frame(frame, points, connectivity)

  if overlay_path is None:
    for _ in overlay_frames():
      pass
  else:
    fps = reader.info.fps or _DEFAULT_FPS
    video.write_video(overlay_path, overlay_frames(), fps)
  progress.close()
  for fmt, path in pose_paths.items():
    pose_files.write(path, fmt, keypoints, confidence, bodypart_names(keypoints.shape[1]),
                     scorer=SCORER, connectivity=connectivity, video_path=reader.path)
  return num_frames


def _check_labels(source: dlc.LabeledFramesSource, train_fraction: float) -> None:
  if source.num_videos < 2:
    raise DataError(f'{source.labels_file.path}: {source.num_videos} labelled image(s); '
                    'the held-out evaluation needs at least 2.')
  if not 0.0 < train_fraction < 1.0:
    raise ValueError(f'--labels_train_fraction={train_fraction} must be in (0, 1).')


def evaluate_labels(restored: inference.Restored, source: dlc.LabeledFramesSource, *,
                    train_fraction: float = 0.5, seed: int = 0, batch_size: int = 16,
                    confidence_scale: float = 0.05) -> Dict[str, Any]:
  """How well the discovered keypoints track a user's labelled body parts.

  Runs the model on every labelled image, splits the images at random (`seed`)
  into a fit part (round(train_fraction * R), at least 1) and a held-out part (at
  least 1), fits `regression.fit_regression` (least squares with bias per body
  part and coordinate, pixels) from the N keypoints to the G labelled body parts
  on the fit part, and reports the mean L2 error in pixels on the held-out part,
  next to baselines fitted and scored the same way: each body part's mean labelled
  position, and the background-subtraction tracker (`evaluation.blob_tracker`: its blob
  centroid and major-axis ends, and its centroid alone).
  """
  _check_labels(source, train_fraction)
  count = source.num_videos
  frames = (source.frame(v, 0) for v in range(count))
  detected = np.stack([points for _, points, _ in run_model(
      restored, frames, batch_size=batch_size, confidence_scale=confidence_scale)])
  labels = [source.labels(v, 0) for v in range(count)]
  truth = np.stack([l.keypoints for l in labels]).astype(np.float64)
  visible = np.stack([l.visible for l in labels])
  order = np.random.default_rng(seed).permutation(count)
  num_fit = int(np.clip(round(train_fraction * count), 1, count - 1))
  fit, held = np.sort(order[:num_fit]), np.sort(order[num_fit:])
  regressor = regression.fit_regression(detected[fit], truth[fit], visible[fit],
                                        bias=True)
  result = regression.evaluate_regression(regressor, detected[held], truth[held],
                                          visible[held], units='pixels')
  # Bias only (no keypoint features): each body part's mean position on the fit part.
  no_features = np.zeros((count, 0, 2))
  baseline = regression.evaluate_regression(
      regression.fit_regression(no_features[fit], truth[fit], visible[fit]),
      no_features[held], truth[held], visible[held], units='pixels')
  # The background-subtraction tracker, fitted and scored the same way: its three points,
  # and its centroid alone.
  blobs = blob_tracker.track(lambda v: source.frame(v, 0),
                             [source.video_name(v) for v in range(count)],
                             restored.config.data.foreground_threshold)
  tracker = {}
  for name, points in (('blob_tracker_baseline', blobs), ('centroid_baseline', blobs[:, :1])):
    tracker[name] = regression.evaluate_regression(
        regression.fit_regression(points[fit], truth[fit], visible[fit], bias=True),
        points[held], truth[held], visible[held], units='pixels').value
  names = source.joint_names
  per_joint = {n: e for n, e in zip(names, result.details['per_joint'])}
  return jsonable({
      'protocol': LABELS_PROTOCOL, 'value': result.value, 'units': result.units,
      'checkpoint_step': restored.step, 'labels': source.labels_file.path,
      'num_images': count, 'num_fit_images': len(fit),
      'num_heldout_images': len(held), 'heldout_labels': result.details['num_labels'],
      'train_fraction': train_fraction, 'seed': seed,
      'fit_images': [source.video_name(int(v)) for v in fit],
      'heldout_images': [source.video_name(int(v)) for v in held],
      'per_bodypart': per_joint,
      'mean_position_baseline': baseline.value, **tracker})


def predict(workdir: str, out_dir: str, *, video_path: Optional[str] = None,
            labels: Optional[str] = None,
            config: Optional[ml_collections.ConfigDict] = None,
            step: Optional[int] = None, batch_size: int = 16, overlay: bool = True,
            max_frames: int = 0, confidence_scale: float = 0.05,
            labels_train_fraction: float = 0.5, labels_seed: int = 0,
            labels_image_root: Optional[str] = None,
            formats: Sequence[str] = pose_files.DEFAULT_FORMATS) -> Dict[str, Any]:
  """Runs the CLI's work; returns {'files': [...], 'num_frames', 'labels_eval'}."""
  formats = pose_files.parse_formats(','.join(formats))
  if video_path is None and labels is None:
    raise ValueError('Nothing to do: give --video=IN (and/or --labels=CollectedData.csv).')
  if batch_size < 1 or confidence_scale <= 0:
    raise ValueError(f'--batch_size={batch_size} must be >= 1 and --confidence_scale='
                     f'{confidence_scale} > 0.')
  # Every input is checked before anything is built or written.
  config = workdir_lib.load_config(workdir, config)
  workdir_lib.checkpoint_steps(workdir)
  reader = video.VideoReader(video_path, cache_size=1) if video_path else None
  source = None
  if labels:
    source = dlc.LabeledFramesSource(labels, image_root=labels_image_root)
    _check_labels(source, labels_train_fraction)
  restored = inference.restore(config, workdir, step)

  outputs = _Outputs(out_dir, created_dir=not os.path.isdir(out_dir))
  os.makedirs(out_dir, exist_ok=True)
  result = {'num_frames': 0, 'labels_eval': None}
  try:
    if reader is not None:
      stem = os.path.splitext(os.path.basename(video_path))[0]
      pose_paths = {fmt: outputs.temp(f'{stem}_ppl{pose_files.EXTENSIONS[fmt]}')
                    for fmt in formats}
      overlay_path = outputs.temp(f'{stem}_ppl_overlay.mp4') if overlay else None
      result['num_frames'] = predict_video(
          restored, reader, pose_paths, overlay_path, batch_size=batch_size,
          max_frames=max_frames, confidence_scale=confidence_scale)
    if source is not None:
      report = evaluate_labels(restored, source, train_fraction=labels_train_fraction,
                               seed=labels_seed, batch_size=batch_size,
                               confidence_scale=confidence_scale)
      with open(outputs.temp('labels_eval.json'), 'w') as f:
        json.dump(report, f, indent=2, allow_nan=False)
      result['labels_eval'] = report
    result['files'] = outputs.commit()
  except BaseException:
    outputs.discard()
    raise
  finally:
    if reader is not None:
      reader.close()
  return result


FLAGS = flags.FLAGS


def _define_flags():
  flags.DEFINE_string('workdir', None, 'Workdir of a training run (with checkpoints/).')
  flags.DEFINE_string('video', None, 'Input video file (mp4/avi/mov/mkv).')
  flags.DEFINE_string('out', None, 'Output folder (created if missing).')
  config_flags.DEFINE_config_file(
      'config', None, 'Training configuration file (default: WORKDIR/config.json).',
      lock_config=True)
  flags.DEFINE_integer('step', None, 'Checkpoint step (default: latest).')
  flags.DEFINE_integer('batch_size', 16, 'Frames per model call.')
  flags.DEFINE_bool('overlay', True, 'Write the overlay video.')
  flags.DEFINE_list('formats', list(pose_files.DEFAULT_FORMATS),
                    f'Pose files to write, a subset of {",".join(pose_files.FORMATS)} '
                    '(slp and nwb carry the learned skeleton; module docstring).')
  flags.DEFINE_integer('max_frames', 0, 'Only the first N frames (0 = all).')
  flags.DEFINE_float('confidence_scale', 0.05,
                     'Confidence scale, units of the image side (module docstring).')
  flags.DEFINE_string('labels', None, 'Optional DeepLabCut CollectedData CSV: '
                      'held-out regression error of the keypoints against it.')
  flags.DEFINE_string('labels_image_root', None, 'Folder the CSV image paths are '
                      'relative to (default: found next to the CSV).')
  flags.DEFINE_float('labels_train_fraction', 0.5,
                     'Fraction of the labelled images the regression is fitted on.')
  flags.DEFINE_integer('labels_seed', 0, 'Seed of the fit / held-out split.')
  flags.mark_flags_as_required(['workdir', 'out'])


def main(argv):
  del argv
  result = predict(
      FLAGS.workdir, FLAGS.out, video_path=FLAGS.video, labels=FLAGS.labels,
      config=FLAGS.config, step=FLAGS.step, batch_size=FLAGS.batch_size,
      overlay=FLAGS.overlay, max_frames=FLAGS.max_frames,
      confidence_scale=FLAGS.confidence_scale,
      labels_train_fraction=FLAGS.labels_train_fraction,
      labels_seed=FLAGS.labels_seed, labels_image_root=FLAGS.labels_image_root,
      formats=FLAGS.formats)
  if result['num_frames']:
    print(f'{result["num_frames"]} frames; wrote {", ".join(result["files"])}')
  report = result['labels_eval']
  if report is not None:
    print(f'Held-out error on {report["num_heldout_images"]} labelled images '
          f'({report["heldout_labels"]} labelled body parts): {report["value"]:.2f} px '
          f'(mean L2; each body part\'s mean position: '
          f'{report["mean_position_baseline"]:.2f} px; a background-subtraction tracker\'s '
          f'blob centroid and major-axis ends: {report["blob_tracker_baseline"]:.2f} px, its '
          f'centroid alone: {report["centroid_baseline"]:.2f} px)', flush=True)


if __name__ == '__main__':
  _define_flags()
  cli.run(main, 'ppl_jax.predict')
