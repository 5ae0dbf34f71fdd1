"""The prediction driver: videos -> DeepLabCut CSV + overlay, labels -> held-out error."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pandas as pd
from PIL import Image
import pytest
from scipy import ndimage

from ppl_jax import cli
from ppl_jax import inference
from ppl_jax import predict
from ppl_jax import workdir as workdir_lib
from ppl_jax.data import dlc
from ppl_jax.data import synthetic
from ppl_jax.data import video
from ppl_jax.data.errors import DataError
from ppl_jax.evaluation import figures
from ppl_jax.evaluation import prior_quality
from ppl_jax.models.ppl import PPL
from conftest import REPO

NUM_FRAMES, WIDTH, HEIGHT = 12, 80, 64


def _shared_dir():
  return Path(os.environ.get('PPL_SHARED_DIR',
                             Path(__file__).resolve().parents[2] / 'shared'))


@pytest.fixture(scope='module')
def workdir(tiny_trained_run):
  return tiny_trained_run


@pytest.fixture(scope='module')
def restored(workdir):
  return inference.restore(workdir_lib.load_config(str(workdir)), str(workdir))


def _synthetic_frames(count, width, height):
  """Synthetic test-split frames resized to width x height, uint8 [count, H, W, 3]."""
  source = synthetic.SyntheticVideos('humanoid', 1, count, 64, seed=3, split='test')
  return np.stack([np.asarray(Image.fromarray(source.frame(0, t)).resize(
      (width, height), Image.BILINEAR)) for t in range(count)])


@pytest.fixture(scope='module')
def clip(tmp_path_factory):
  path = tmp_path_factory.mktemp('clip') / 'clip.mp4'
  video.write_video(path, _synthetic_frames(NUM_FRAMES, WIDTH, HEIGHT), fps=10)
  return path


def _decode(path):
  """Every frame of a video, decoded with PyAV directly: uint8 [F, H, W, 3]."""
  with av.open(str(path)) as container:
    return np.stack([f.to_ndarray(format='rgb24') for f in container.decode(video=0)])


def _reference(restored, frames, scale=0.05):
  """Keypoints in pixels and confidences re-derived in float64 numpy from the model's
  estimate / recall methods applied directly (not through predict.py)."""
  size = restored.config.data.image_size
  model, variables = restored.model, restored.variables
  images = np.stack([np.asarray(Image.fromarray(f).resize((size, size), Image.BILINEAR))
                     for f in frames]).astype(np.float32) / 127.5 - 1.0
  keypoints, _ = model.apply(variables, images, train=False, method=PPL.estimate)
  recalled = np.asarray(model.apply(variables, keypoints, method=PPL.recall), np.float64)
  keypoints = np.asarray(keypoints, np.float64)
  height, width = frames.shape[1:3]
  # Half-pixel convention: x = -1 + (2c + 1) / W  <=>  c = ((x + 1) W - 1) / 2.
  pixels = ((keypoints + 1.0) * np.array([width, height]) - 1.0) / 2.0
  confidence = np.exp(-np.linalg.norm(keypoints - recalled, axis=-1) / 2.0 / scale)
  return pixels, confidence


def test_video_to_csv_and_overlay(restored, workdir, clip, tmp_path):
  out = tmp_path / 'out'
  # batch 5: two full batches and a padded one of 2 frames.
  result = predict.predict(str(workdir), str(out), video_path=str(clip), batch_size=5)
  assert result['num_frames'] == NUM_FRAMES
  assert sorted(os.listdir(out)) == ['clip_ppl.csv', 'clip_ppl.h5', 'clip_ppl_overlay.mp4']
  table = pd.read_csv(out / 'clip_ppl.csv', header=[0, 1, 2], index_col=0)
  num_parts = restored.config.model.num_parts
  assert list(table.index) == list(range(NUM_FRAMES))
  assert table.columns.get_level_values(0).unique().tolist() == ['ppl_jax']
  assert table.columns.get_level_values(1).unique().tolist() == [
      f'kp{i:02d}' for i in range(num_parts)]
  assert table.columns.get_level_values(2).tolist() == ['x', 'y', 'likelihood'] * num_parts
  values = table.to_numpy().reshape(NUM_FRAMES, num_parts, 3)
  pixels, confidence = _reference(restored, _decode(clip))
  np.testing.assert_allclose(values[..., :2], pixels, atol=2e-3)
  np.testing.assert_allclose(values[..., 2], confidence, rtol=1e-4, atol=1e-7)
  assert np.all((values[..., 2] > 0) & (values[..., 2] <= 1))
  info = video.probe(out / 'clip_ppl_overlay.mp4')
  assert (info.num_frames, info.width, info.height) == (NUM_FRAMES, WIDTH, HEIGHT)
  assert len(_decode(out / 'clip_ppl_overlay.mp4')) == NUM_FRAMES


def _heaviest_pairs(connectivity, count):
  """The `count` heaviest pairs i < j of W, ties by pair order, re-derived in numpy."""
  rows, cols = np.triu_indices(len(connectivity), k=1)
  order = np.argsort(-np.asarray(connectivity, np.float64)[rows, cols], kind='stable')
  return sorted((int(rows[k]), int(cols[k])) for k in order[:count])


def test_every_pose_format_opens_in_its_real_reader(restored, workdir, clip, tmp_path):
  sio = pytest.importorskip('sleap_io')
  pynwb = pytest.importorskip('pynwb')
  pytest.importorskip('ndx_pose')
  load_poses = pytest.importorskip('movement.io.load_poses')
  out = tmp_path / 'out'
  predict.predict(str(workdir), str(out), video_path=str(clip), overlay=False,
                  formats=['csv', 'h5', 'slp', 'nwb'])
  assert sorted(os.listdir(out)) == ['clip_ppl.csv', 'clip_ppl.h5', 'clip_ppl.nwb',
                                     'clip_ppl.slp']
  num_parts = restored.config.model.num_parts
  names = [f'kp{i:02d}' for i in range(num_parts)]
  table = pd.read_csv(out / 'clip_ppl.csv', header=[0, 1, 2], index_col=0)
  csv_values = table.to_numpy().reshape(NUM_FRAMES, num_parts, 3)
  # DeepLabCut's HDF5: its key, the same MultiIndex, the same numbers.
  h5 = pd.read_hdf(out / 'clip_ppl.h5', key='df_with_missing')
  assert h5.columns.names == ['scorer', 'bodyparts', 'coords']
  assert h5.columns.tolist() == table.columns.tolist()
  np.testing.assert_allclose(h5.to_numpy().reshape(csv_values.shape), csv_values, atol=1e-3)
  # movement reads all three DeepLabCut/SLEAP files to the same positions [F, xy, N, 1].
  for name, loader in (('clip_ppl.csv', load_poses.from_dlc_file),
                       ('clip_ppl.h5', load_poses.from_dlc_file),
                       ('clip_ppl.slp', load_poses.from_sleap_file)):
    position = loader(out / name).position.values
    np.testing.assert_allclose(position[..., 0].transpose(0, 2, 1), csv_values[..., :2],
                               atol=1e-3, err_msg=name)
  # SLEAP: the learned skeleton, its edges the N - 1 heaviest links of W.
  _, connectivity = prior_quality.extract_prior(restored.model, restored.variables)
  edges = _heaviest_pairs(connectivity, num_parts - 1)
  labels = sio.load_file(str(out / 'clip_ppl.slp'))
  [skeleton] = labels.skeletons
  assert skeleton.node_names == names
  assert sorted(tuple(sorted(names.index(n) for n in pair))
                for pair in skeleton.edge_names) == edges
  assert [lf.frame_idx for lf in labels.labeled_frames] == list(range(NUM_FRAMES))
  np.testing.assert_allclose(np.stack([lf.instances[0].numpy() for lf in labels.labeled_frames]),
                             csv_values[..., :2], atol=1e-3)
  # NWB with ndx-pose: one PoseEstimationSeries per keypoint, the same coordinates.
  with pynwb.NWBHDF5IO(str(out / 'clip_ppl.nwb'), 'r') as io:
    nwb = io.read()
    [estimation] = [obj for module in nwb.processing.values()
                    for obj in module.data_interfaces.values()
                    if type(obj).__name__ == 'PoseEstimation']
    series = estimation.pose_estimation_series
    assert sorted(series) == names
    for i, name in enumerate(names):
      np.testing.assert_allclose(series[name].data[:], csv_values[:, i, :2], atol=1e-3)
    assert sorted(tuple(sorted(map(int, e))) for e in estimation.skeleton.edges[:]) == edges


def test_unknown_format_is_refused_before_anything_is_written(workdir, clip, tmp_path):
  out = tmp_path / 'out'
  with pytest.raises(ValueError, match="--formats='csv,mat': unknown mat; use a comma"):
    predict.predict(str(workdir), str(out), video_path=str(clip), formats=['csv', 'mat'])
  assert not out.exists()


def test_draw_pose_link_opacity_follows_weight():
  frame = np.zeros((40, 60, 3), np.uint8)
  points = np.array([[5.0, 10.0], [54.0, 10.0], [5.0, 30.0], [54.0, 30.0]])
  weights = np.zeros((4, 4))
  weights[0, 1] = weights[1, 0] = 1.0     # top link, full weight
  weights[2, 3] = weights[3, 2] = 0.25    # bottom link, a quarter
  drawn = figures.draw_pose_on_frame(frame, points, weights).astype(np.float64)
  strong, weak = drawn[10, 30], drawn[30, 30]   # link midpoints, away from the dots
  # Alpha blending over black: the colour scales with the weight.
  link = 255 * np.array([1.0, 0.15, 0.1])
  np.testing.assert_allclose(strong, np.round(link), atol=1.5)
  np.testing.assert_allclose(weak, link * 0.25, atol=1.5)
  assert drawn[20, 30].sum() == 0                # no link between the rows


def _write_labelled_project(root, count=6):
  """A DeepLabCut-style fixture: count images, 3 body parts, one label missing."""
  frames = _synthetic_frames(count, WIDTH, HEIGHT)
  folder = root / 'labeled-data' / 'clip'
  folder.mkdir(parents=True)
  rng = np.random.default_rng(0)
  keypoints = rng.uniform([0, 0], [WIDTH - 1, HEIGHT - 1], size=(count, 3, 2))
  visible = np.ones((count, 3), bool)
  visible[1, 2] = False
  names = []
  for i, frame in enumerate(frames):
    Image.fromarray(frame).save(folder / f'img{i:03d}.png')
    names.append(f'labeled-data/clip/img{i:03d}.png')
  csv_path = folder / 'CollectedData_me.csv'
  dlc.write_dlc_csv(csv_path, names, keypoints, ['nose', 'paw', 'tail'],
                    visible=visible, scorer='me')
  return csv_path, frames, keypoints, visible


def test_labels_heldout_error(restored, workdir, tmp_path):
  csv_path, frames, truth, visible = _write_labelled_project(tmp_path / 'project')
  out = tmp_path / 'out'
  result = predict.predict(str(workdir), str(out), labels=str(csv_path),
                           labels_train_fraction=0.5, labels_seed=1)
  assert os.listdir(out) == ['labels_eval.json']
  report = json.loads((out / 'labels_eval.json').read_text())
  assert report == result['labels_eval']
  assert report['checkpoint_step'] == 3 and report['units'].startswith('pixels')
  assert report['num_fit_images'] == 3 and report['num_heldout_images'] == 3
  assert np.isfinite(report['value']) and np.isfinite(report['mean_position_baseline'])
  # Independent re-derivation: numpy least squares with bias per labelled column.
  index = {f'img{i:03d}.png': i for i in range(len(frames))}
  fit = [index[os.path.basename(p)] for p in report['fit_images']]
  held = [index[os.path.basename(p)] for p in report['heldout_images']]
  assert sorted(fit + held) == list(range(len(frames)))
  pixels, _ = _reference(restored, frames)
  features = np.concatenate([pixels.reshape(len(frames), -1),
                             np.ones((len(frames), 1))], axis=1)
  errors = []
  for g in range(truth.shape[1]):
    rows = [f for f in fit if visible[f, g]]
    beta = np.linalg.lstsq(features[rows], truth[rows, g], rcond=None)[0]
    errors += [np.linalg.norm(features[h] @ beta - truth[h, g])
               for h in held if visible[h, g]]
  np.testing.assert_allclose(report['value'], np.mean(errors), rtol=1e-3)
  assert report['heldout_labels'] == len(errors)
  # The tracker baselines, re-derived: the median of the folder's images, the largest
  # foreground blob, its centroid and major-axis ends, and the same least squares.
  median = np.sort(np.stack(frames), axis=0)[(len(frames) - 1) // 2].astype(np.int16)
  points = []
  for frame in frames:
    mask = np.abs(frame.astype(np.int16) - median).max(-1) > 0.1 * 255
    labels, count = ndimage.label(mask, structure=np.ones((3, 3)))
    rows, cols = np.nonzero(labels == 1 + np.argmax(np.bincount(labels.ravel())[1:]))
    xy = np.stack([cols, rows], 1).astype(np.float64)
    values, vectors = np.linalg.eigh(np.cov(xy.T))
    half = 2 * np.sqrt(values[-1]) * vectors[:, -1]
    ends = sorted([xy.mean(0) - half, xy.mean(0) + half], key=tuple)
    points.append([xy.mean(0), *ends])
  points = np.asarray(points)
  for key, used in (('blob_tracker_baseline', points), ('centroid_baseline', points[:, :1])):
    design = np.concatenate([used.reshape(len(frames), -1), np.ones((len(frames), 1))], 1)
    errors = []
    for g in range(truth.shape[1]):
      rows = [f for f in fit if visible[f, g]]
      beta = np.linalg.lstsq(design[rows], truth[rows, g], rcond=None)[0]
      errors += [np.linalg.norm(design[h] @ beta - truth[h, g]) for h in held if visible[h, g]]
    np.testing.assert_allclose(report[key], np.mean(errors), rtol=1e-6, err_msg=key)


def _assert_no_files(out):
  assert not out.exists() or list(out.iterdir()) == []


def test_bad_inputs_fail_cleanly(workdir, clip, tmp_path):
  out = tmp_path / 'out'
  # A workdir without checkpoints (its config is there).
  empty = tmp_path / 'empty_run'
  empty.mkdir()
  shutil.copy(workdir / 'config.json', empty / 'config.json')
  with pytest.raises(FileNotFoundError, match='No checkpoint in'):
    predict.predict(str(empty), str(out), video_path=str(clip))
  _assert_no_files(out)
  # An unreadable video.
  broken = tmp_path / 'broken.mp4'
  broken.write_bytes(b'this is not a video' * 100)
  with pytest.raises(DataError, match='broken.mp4'):
    predict.predict(str(workdir), str(out), video_path=str(broken))
  _assert_no_files(out)
  # Labels naming images that do not exist.
  csv_path = tmp_path / 'CollectedData_me.csv'
  dlc.write_dlc_csv(csv_path, ['labeled-data/v/missing.png', 'labeled-data/v/gone.png'],
                    np.zeros((2, 1, 2)), ['nose'], scorer='me')
  with pytest.raises(DataError, match='not found'):
    predict.predict(str(workdir), str(out), video_path=str(clip), labels=str(csv_path))
  _assert_no_files(out)
  # A bad split fraction.
  labels = str(_write_labelled_project(tmp_path / 'p')[0])
  with pytest.raises(ValueError, match='labels_train_fraction'):
    predict.predict(str(workdir), str(out), video_path=str(clip), labels=labels,
                    labels_train_fraction=1.0)
  _assert_no_files(out)


def test_failure_after_the_video_removes_its_outputs(workdir, clip, tmp_path,
                                                      monkeypatch):
  out = tmp_path / 'out'
  out.mkdir()
  (out / 'keep.txt').write_text('mine')
  labels = str(_write_labelled_project(tmp_path / 'p')[0])

  def fail(*args, **kwargs):
    assert sorted(os.listdir(out))[0].startswith('.tmp-')   # the video's outputs
    raise RuntimeError('labels evaluation failed')

  monkeypatch.setattr(predict, 'evaluate_labels', fail)
  with pytest.raises(RuntimeError, match='labels evaluation failed'):
    predict.predict(str(workdir), str(out), video_path=str(clip), labels=labels)
  assert os.listdir(out) == ['keep.txt']


def test_cli_reports_a_bad_video(workdir, tmp_path):
  out = tmp_path / 'out'
  done = subprocess.run(
      [sys.executable, '-m', 'ppl_jax.predict', f'--workdir={workdir}',
       f'--video={tmp_path / "nope.mp4"}', f'--out={out}'],
      cwd=REPO, capture_output=True, text=True, timeout=120, check=False)
  assert done.returncode == cli.EXIT_USER_ERROR
  assert 'nope.mp4: video file not found' in done.stderr
  _assert_no_files(out)


@pytest.mark.slow
def test_real_video(workdir, tmp_path):
  path = _shared_dir() / 'data' / 'mirror-mouse' / 'videos' / 'test_vid.mp4'
  if not path.is_file():
    pytest.skip(f'{path} not found: the shared data folder (../shared or '
                'PPL_SHARED_DIR) is absent.')
  out = tmp_path / 'out'
  done = subprocess.run(
      [sys.executable, '-m', 'ppl_jax.predict', f'--workdir={workdir}',
       f'--video={path}', f'--out={out}'],
      cwd=REPO, capture_output=True, text=True, timeout=900, check=False)
  assert done.returncode == 0, done.stderr[-2000:]
  info = video.probe(path)
  table = pd.read_csv(out / 'test_vid_ppl.csv', header=[0, 1, 2], index_col=0)
  assert list(table.index) == list(range(info.num_frames))   # 994
  overlay = video.probe(out / 'test_vid_ppl_overlay.mp4')
  assert (overlay.num_frames, overlay.width, overlay.height) == (
      info.num_frames, info.width, info.height)
