"""Tests of the TFDS builders, `prepare` and `PreparedSource` (no TensorFlow)."""

import pathlib
import pickle
import subprocess
import sys

import numpy as np
import pandas as pd
from PIL import Image
import pytest
import scipy.io
import tensorflow_datasets as tfds

from ppl_jax import config as config_lib
from ppl_jax import input_pipeline
from ppl_jax.data import base
from ppl_jax.data import prepare as prepare_lib
from ppl_jax.data import tfds_builders
from ppl_jax.data.errors import DataError


class RampVideos(base.VideoSource):
  """Two videos of 3 and 4 frames, 12 x 10 px, content from (video, frame, pixel)."""

  lengths = (3, 4)

  @property
  def num_videos(self):
    return 2

  def num_frames(self, video):
    return self.lengths[video]

  def frame(self, video, index):
    y, x, c = np.meshgrid(np.arange(12), np.arange(10), np.arange(3), indexing='ij')
    return ((x * 7 + y * 13 + c * 50 + video * 31 + index * 17) % 256).astype(np.uint8)

  def labels(self, video, index):
    if video == 1 and index == 2:
      return None
    keypoints = np.array([[index, video], [9.0, 11.0], [2.5, 0.5]], np.float32)
    return base.FrameLabels(keypoints=keypoints, visible=np.array([True, True, index > 0]))

  def video_name(self, video):
    return f'ramp{video}'

  @property
  def skeleton(self):
    return [(0, 1), (1, 2)]

  @property
  def joint_names(self):
    return ['a', 'b', 'c']


class PplRampTest(tfds_builders.VideoSourceBuilder):
  """Test-only builder over `RampVideos` (same frames for both splits)."""

  SOURCE_NAME = 'ramp_test'

  def make_source(self, manual_dir, split):
    del manual_dir, split
    return RampVideos()


def test_roundtrip_through_array_record(tmp_path):
  assert 'tensorflow' not in sys.modules
  builder = PplRampTest(data_dir=str(tmp_path), file_format='array_record')
  builder.download_and_prepare(
      download_config=tfds.download.DownloadConfig(manual_dir=str(tmp_path)))
  assert 'tensorflow' not in sys.modules
  assert list(builder.data_path.glob('*.array_record*'))
  raw = RampVideos()
  prepared = tfds_builders.PreparedSource(str(tmp_path), 'ramp_test', 'train',
                                          builder_name=PplRampTest.name)
  prepared = pickle.loads(pickle.dumps(prepared))  # as grain workers receive it
  assert prepared.num_videos == 2
  assert [prepared.num_frames(v) for v in range(2)] == [3, 4]
  assert prepared.video_name(1) == 'ramp1'
  assert prepared.joint_names == ['a', 'b', 'c']
  assert list(prepared.skeleton) == [(0, 1), (1, 2)]
  for v in range(2):
    for t in range(raw.num_frames(v)):
      np.testing.assert_array_equal(prepared.frame(v, t), raw.frame(v, t))  # PNG: lossless
      want, got = raw.labels(v, t), prepared.labels(v, t)
      if want is None:
        assert got is None
      else:
        np.testing.assert_array_equal(got.keypoints, want.keypoints)
        np.testing.assert_array_equal(got.visible, want.visible)
  # The eval pipeline sees the same batches from both.
  config = config_lib.default_config()
  config.data.image_size = 8
  a = list(input_pipeline.create_eval_dataset(config, raw, batch_size=4))
  b = list(input_pipeline.create_eval_dataset(config, prepared, batch_size=4))
  assert len(a) == len(b) == 2
  for x, y in zip(a, b):
    for k in x:
      np.testing.assert_array_equal(x[k], y[k])


class JpegFiles(RampVideos):
  """`RampVideos` stored as JPEG files, named through the optional `frame_path` hook."""

  folder = None

  def frame_path(self, video, index):
    return str(self.folder / f'{video}_{index}.jpg')

  def frame(self, video, index):
    with Image.open(self.frame_path(video, index)) as image:
      return np.asarray(image.convert('RGB'))


class PplJpegTest(tfds_builders.VideoSourceBuilder):
  """Test-only builder over `JpegFiles`."""

  SOURCE_NAME = 'jpeg_test'

  def make_source(self, manual_dir, split):
    del split
    JpegFiles.folder = pathlib.Path(manual_dir)
    return JpegFiles()


def test_frame_files_are_copied_not_reencoded(tmp_path):
  ramp = RampVideos()
  for v in range(2):
    for t in range(ramp.num_frames(v)):
      Image.fromarray(ramp.frame(v, t)).save(tmp_path / f'{v}_{t}.jpg', quality=70)
  builder = PplJpegTest(data_dir=str(tmp_path / 'out'), file_format='array_record')
  builder.download_and_prepare(
      download_config=tfds.download.DownloadConfig(manual_dir=str(tmp_path)))
  record = builder.as_data_source('test')[4]  # video 1, frame 1
  assert record['image'] == (tmp_path / '1_1.jpg').read_bytes()
  prepared = tfds_builders.PreparedSource(str(tmp_path / 'out'), 'jpeg_test', 'test',
                                          builder_name=PplJpegTest.name)
  with Image.open(tmp_path / '1_1.jpg') as image:
    np.testing.assert_array_equal(prepared.frame(1, 1), np.asarray(image))


def test_prepared_source_errors(tmp_path):
  with pytest.raises(FileNotFoundError, match='--dataset=h36m'):
    tfds_builders.PreparedSource(str(tmp_path), 'h36m', 'train')
  with pytest.raises(ValueError, match="config.data.name='synthetic'"):
    tfds_builders.PreparedSource(str(tmp_path), 'synthetic', 'train')
  data = config_lib.default_config().data
  data.name, data.data_dir = 'taichi', str(tmp_path)
  with pytest.raises(FileNotFoundError, match='config.data.data_dir'):
    input_pipeline.build_source(data, 'test')


def _write_h36m(root, rng):
  """Every train subject with a 2-frame sequence, S11 (test) with a 3-frame one."""
  for subject in (1, 5, 6, 7, 8, 9, 11):
    for sequence in ('Directions 1', 'Walking.2')[:2 if subject == 1 else 1]:
      images = root / f'S{subject}' / 'WithBackground' / sequence
      marks = root / f'S{subject}' / 'Landmarks' / sequence
      images.mkdir(parents=True)
      marks.mkdir(parents=True)
      for t in range(3 if subject == 11 else 2):
        Image.fromarray(rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(
            images / f'{t}.jpg')
        scipy.io.savemat(marks / f'{t}.mat', {'keypoints_2d': rng.uniform(0, 1, (32, 2))})


def _write_taichi(root, rng):
  """train/<video>/<frame>.png videos plus labelled eval images and gt pickles."""
  for video, frames in (('vid_a', 3), ('vid_b', 2)):
    (root / 'train' / video).mkdir(parents=True)
    for t in range(frames):
      Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(
          root / 'train' / video / f'{t:07d}.png')
  (root / 'landmark').mkdir()
  for split in ('train', 'test'):
    folder = root / 'eval_images' / 'taichi-256' / split
    folder.mkdir(parents=True)
    names, values = [], []
    for i in range(2):
      name = f'{split}_{i}.png'
      Image.fromarray(rng.integers(0, 256, (256, 256, 3), dtype=np.uint8)).save(folder / name)
      value = rng.uniform(0, 255, (18, 2))
      value[3] = -1
      names.append(name)
      values.append(value)
    pd.DataFrame({'file_name': names, 'value': values}).to_pickle(
        root / 'landmark' / f'taichi_{split}_gt.pkl')


@pytest.mark.parametrize('dataset,writer,reader', [
    ('h36m', _write_h36m, 'ppl_jax.data.h36m'),
    ('taichi', _write_taichi, 'ppl_jax.data.taichi'),
])
def test_prepare_raw_layout_matches_raw_reader(tmp_path, dataset, writer, reader):
  pytest.importorskip(reader)
  manual_dir = tmp_path / 'raw'
  writer(manual_dir, np.random.default_rng(0))
  prepare_lib.prepare(dataset, str(manual_dir), str(tmp_path / 'out'))
  assert 'tensorflow' not in sys.modules
  for split in input_pipeline.SPLITS:
    data = config_lib.default_config().data
    data.name, data.root = dataset, str(manual_dir)
    raw = input_pipeline.build_source(data, split)
    data.data_dir = str(tmp_path / 'out')
    prepared = input_pipeline.build_source(data, split)
    assert isinstance(prepared, tfds_builders.PreparedSource)
    assert prepared.num_videos == raw.num_videos > 0
    assert prepared.joint_names == (None if raw.joint_names is None
                                    else list(raw.joint_names))
    for v in range(raw.num_videos):
      assert prepared.video_name(v) == raw.video_name(v)
      assert prepared.num_frames(v) == raw.num_frames(v)
      for t in range(raw.num_frames(v)):
        np.testing.assert_array_equal(prepared.frame(v, t), raw.frame(v, t))
        want, got = raw.labels(v, t), prepared.labels(v, t)
        assert (want is None) == (got is None)
        if want is not None:
          np.testing.assert_array_equal(got.keypoints, want.keypoints)
          np.testing.assert_array_equal(got.visible, want.visible)


def test_prepare_rejects_bad_flags(tmp_path):
  with pytest.raises(ValueError, match='--dataset'):
    prepare_lib.prepare('kinetics', str(tmp_path), str(tmp_path))
  with pytest.raises(FileNotFoundError, match='--manual_dir'):
    prepare_lib.prepare('h36m', str(tmp_path / 'missing'), str(tmp_path))


def test_failed_prepare_removes_what_it_created(tmp_path):
  pytest.importorskip('ppl_jax.data.taichi')
  raw, out = tmp_path / 'raw', tmp_path / 'out'
  raw.mkdir()
  with pytest.raises(FileNotFoundError, match="--manual_dir=.* is empty. Point --manual_dir"):
    prepare_lib.prepare('taichi', str(raw), str(out / 'deeper'))
  assert not out.exists()
  # A folder of the wrong layout fails inside tfds, after it made its folders: they go again,
  # and what was in data_dir before stays.
  (raw / 'notes.txt').write_text('not a dataset')
  out.mkdir()
  (out / 'mine.txt').write_text('keep')
  with pytest.raises(DataError, match='train: folder not found'):
    prepare_lib.prepare('taichi', str(raw), str(out))
  assert sorted(p.name for p in out.iterdir()) == ['mine.txt']
  with pytest.raises(DataError, match='train: folder not found'):
    prepare_lib.prepare('taichi', str(raw), str(tmp_path / 'new' / 'out'))
  assert not (tmp_path / 'new').exists()


def test_prepare_command_line(tmp_path):
  pytest.importorskip('ppl_jax.data.taichi')
  _write_taichi(tmp_path / 'raw', np.random.default_rng(1))
  result = subprocess.run(
      [sys.executable, '-m', 'ppl_jax.data.prepare', '--dataset=taichi',
       f'--manual_dir={tmp_path / "raw"}', f'--data_dir={tmp_path / "out"}'],
      capture_output=True, text=True, check=False,
      cwd=pathlib.Path(__file__).resolve().parents[1], timeout=120)
  assert result.returncode == 0, result.stderr[-2000:]
  out = pathlib.Path(result.stdout.strip().splitlines()[-1])
  assert out == tmp_path / 'out' / 'ppl_taichi' / '1.0.0'
  assert len(list(out.glob('ppl_taichi-*.array_record-*'))) == 3  # train, test, train_eval
  assert 'Generating' in result.stderr  # tfds' tqdm progress bars
