"""Tests of the Human3.6M, Taichi and custom-video sources on tiny fixtures."""

import logging
import os
import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.io
from PIL import Image

from ppl_jax.data import base
from ppl_jax.data import custom
from ppl_jax.data import h36m
from ppl_jax.data import taichi
from ppl_jax.data import video
from ppl_jax.data.errors import DataError

# ----------------------------------------------------------------------------
# Human3.6M

H36M_W, H36M_H = 8, 6   # non-square so that x/y mix-ups show


def save_image(path: Path, colour, size=(H36M_W, H36M_H)):
  path.parent.mkdir(parents=True, exist_ok=True)
  Image.new('RGB', size, tuple(int(c) for c in colour)).save(path)


def h36m_points(seed):
  """keypoints_2d (row, col) in [0, 1]: 32 x 2."""
  return np.random.default_rng(seed).uniform(0, 1, (32, 2))


def make_h36m(root: Path, layout):
  """layout: {subject: {sequence: [frame stems]}}; frame k of a sequence is grey 10*k."""
  for subject, sequences in layout.items():
    for sequence, stems in sequences.items():
      for k, stem in enumerate(stems):
        save_image(root / f'S{subject}' / 'WithBackground' / sequence / f'{stem}.jpg',
                   (10 * k + 50,) * 3)
        mat = root / f'S{subject}' / 'Landmarks' / sequence / f'{stem}.mat'
        mat.parent.mkdir(parents=True, exist_ok=True)
        scipy.io.savemat(mat, {'keypoints_2d': h36m_points(subject * 1000 + int(stem))})


@pytest.fixture
def h36m_root(tmp_path):
  layout = {s: {'Directions 1': ['1', '2', '10'], 'Eating 2': ['1'],
                'WalkTogether': ['1'], 'posing.54138969': ['3', '4']}
            for s in (1, 5, 6, 7, 8, 9)}
  layout[1]['Walking'] = ['1']
  layout[11] = {'Greeting 2': ['7', '8'], 'Sitting': ['1']}
  make_h36m(tmp_path, layout)
  return tmp_path


def test_h36m_splits_and_activity_filter(h36m_root):
  train = h36m.Human36MSource(h36m_root, 'train')
  names = [train.video_name(v) for v in range(train.num_videos)]
  expected = [f'S{s}/{q}' for s in (1, 5, 6, 7, 8, 9)
              for q in ('Directions 1', 'posing.54138969')]
  assert sorted(names) == sorted(expected + ['S1/Walking'])
  test = h36m.Human36MSource(h36m_root, 'test')
  assert [test.video_name(v) for v in range(test.num_videos)] == ['S11/Greeting 2']
  assert test.num_frames(0) == 2


def test_h36m_frames_and_keypoints(h36m_root):
  source = h36m.Human36MSource(h36m_root, 'train', subjects=[5])
  v = [source.video_name(i) for i in range(source.num_videos)].index('S5/Directions 1')
  assert source.num_frames(v) == 3
  # Frames in numeric order 1, 2, 10: frame 2 is the third image (grey 70).
  image = source.frame(v, 2)
  assert image.shape == (H36M_H, H36M_W, 3) and image.dtype == np.uint8
  assert np.abs(image.astype(int) - 70).max() <= 2   # jpeg
  labels = source.labels(v, 2)
  points = h36m_points(5 * 1000 + 10)   # the landmarks of 10.mat
  # By hand: column u spans the width, row v the height; pixel centres at integers.
  for j in (0, 7, 31):
    row, col = points[j]
    assert labels.keypoints[j, 0] == pytest.approx(col * 8 - 0.5, abs=1e-5)
    assert labels.keypoints[j, 1] == pytest.approx(row * 6 - 0.5, abs=1e-5)
  assert labels.keypoints.dtype == np.float32 and labels.visible.all()
  clone = pickle.loads(pickle.dumps(source))
  np.testing.assert_array_equal(clone.labels(v, 2).keypoints, labels.keypoints)
  # normalised coordinates are 2u - 1
  normalised = base.pixels_to_normalized(labels.keypoints, H36M_W, H36M_H)
  np.testing.assert_allclose(normalised, 2 * points[:, ::-1] - 1, atol=1e-5)


def test_h36m_flip_pairs_match_names(h36m_root):
  source = h36m.Human36MSource(h36m_root, 'test')
  names = source.joint_names
  assert len(names) == 32
  paired = [j for pair in source.flip_pairs for j in pair]
  assert len(paired) == len(set(paired)) == 26
  for right, left in source.flip_pairs:
    assert names[right].startswith('r_') and names[left] == 'l_' + names[right][2:]
  unpaired = [n for j, n in enumerate(names) if j not in paired]
  assert not any(n.startswith(('l_', 'r_')) for n in unpaired)
  for a, b in source.skeleton:
    assert 0 <= a < 32 and 0 <= b < 32


def test_h36m_missing_landmark(h36m_root, caplog):
  (h36m_root / 'S5' / 'Landmarks' / 'Directions 1' / '2.mat').unlink()
  with pytest.raises(DataError, match=r'S5/Landmarks/Directions 1/2\.mat: landmark file missing'):
    h36m.Human36MSource(h36m_root, 'train')
  with caplog.at_level(logging.WARNING):
    source = h36m.Human36MSource(h36m_root, 'train', on_bad='warn')
  assert 'S5/Directions 1' not in [source.video_name(v) for v in range(source.num_videos)]
  assert source.num_videos == 12
  assert 'skipped 1 of 13 sequences' in caplog.text


def test_h36m_wrong_layout(tmp_path):
  save_image(tmp_path / 'images' / '1.jpg', (0, 0, 0))
  with pytest.raises(DataError, match='S1/WithBackground: folder not found.*Landmarks'):
    h36m.Human36MSource(tmp_path, 'train')
  with pytest.raises(DataError, match='root folder not found'):
    h36m.Human36MSource(tmp_path / 'nope', 'test')


def test_h36m_bad_mat(h36m_root):
  mat = h36m_root / 'S11' / 'Landmarks' / 'Greeting 2' / '8.mat'
  scipy.io.savemat(mat, {'keypoints_2d': np.zeros((17, 2))})
  source = h36m.Human36MSource(h36m_root, 'test')
  with pytest.raises(DataError, match=r'8\.mat: keypoints_2d has shape \(17, 2\)'):
    source.labels(0, 1)


# ----------------------------------------------------------------------------
# Taichi


def make_taichi(root: Path):
  for v, frames in (('vidA.mp4', 3), ('vidB.mp4', 2)):
    for t in range(frames):
      save_image(root / 'train' / v / f'{t:07d}.png', ((v == 'vidA.mp4') * 100 + t,) * 3, (12, 10))
  values = [np.arange(36, dtype=np.float64).reshape(18, 2) * 7,
            np.full((18, 2), 64.0)]
  values[0][4] = -1      # missing joint
  values[1][0] = [10, 20]
  (root / 'landmark').mkdir(parents=True)
  pd.DataFrame({'file_name': ['a.png', 'b.png'], 'value': values}).to_pickle(
      root / 'landmark' / 'taichi_test_gt.pkl')
  save_image(root / 'eval_images' / 'taichi-256' / 'test' / 'a.png', (1, 2, 3), (256, 256))
  save_image(root / 'eval_images' / 'taichi-256' / 'test' / 'b.png', (4, 5, 6), (128, 64))
  return values


def test_taichi_videos(tmp_path):
  make_taichi(tmp_path)
  source = taichi.TaichiSource(tmp_path, 'train')
  assert source.num_videos == 2
  assert [source.num_frames(v) for v in range(2)] == [3, 2]
  np.testing.assert_array_equal(source.frame(0, 2), np.full((10, 12, 3), 102, np.uint8))
  assert source.labels(0, 0) is None


def test_taichi_labels(tmp_path):
  values = make_taichi(tmp_path)
  source = taichi.TaichiSource(tmp_path, 'test', labelled=True)
  assert source.num_videos == 2 and source.num_frames(0) == 1
  assert source.video_name(0).endswith('eval_images/taichi-256/test/a.png')
  a = source.labels(0, 0)
  expected = values[0].copy()
  expected[4] = 0
  np.testing.assert_array_equal(a.keypoints, expected.astype(np.float32))
  assert a.visible.tolist() == [j != 4 for j in range(18)]
  # b.png is 128 wide, 64 high: x' = (x + 0.5) * 128/256 - 0.5, y' = (y + 0.5) * 64/256 - 0.5
  b = source.labels(1, 0)
  assert b.keypoints[0].tolist() == [(10 + 0.5) / 2 - 0.5, (20 + 0.5) / 4 - 0.5]
  assert b.keypoints[1].tolist() == [31.75, 15.625]   # (64.5 / 2 - 0.5, 64.5 / 4 - 0.5)
  assert source.frame(1, 0).shape == (64, 128, 3)


def test_taichi_missing_image_and_layout(tmp_path, caplog):
  make_taichi(tmp_path)
  (tmp_path / 'eval_images' / 'taichi-256' / 'test' / 'b.png').unlink()
  with pytest.raises(DataError, match=r'taichi-256/test/b\.png: image of row 1'):
    taichi.TaichiSource(tmp_path, 'test', labelled=True)
  with caplog.at_level(logging.WARNING):
    source = taichi.TaichiSource(tmp_path, 'test', labelled=True, on_bad='warn')
  assert source.num_videos == 1
  assert 'skipped 1 of 2 labelled images' in caplog.text
  with pytest.raises(DataError, match=r'taichi_train_gt\.pkl: ground-truth file not found'):
    taichi.TaichiSource(tmp_path, 'train', labelled=True)
  with pytest.raises(DataError, match='test: folder not found'):
    taichi.TaichiSource(tmp_path, 'test')


# ----------------------------------------------------------------------------
# Custom videos


def test_custom_folder_of_videos_and_frame_folders(tmp_path):
  frames = np.stack([np.full((6, 10, 3), 20 * t, np.uint8) for t in range(5)])
  video.write_video(tmp_path / 'clipB.mkv', frames, fps=10)
  video.write_video(tmp_path / 'clipA.avi', frames[:3], fps=10)
  for t in range(4):
    save_image(tmp_path / 'clipC' / f'{t}.png', (t, t, t), (7, 5))
  (tmp_path / 'notes.txt').write_text('not a video')
  (tmp_path / 'empty_dir').mkdir()
  source = custom.CustomVideosSource(tmp_path)
  names = [Path(source.video_name(v)).name for v in range(source.num_videos)]
  assert names == ['clipA.avi', 'clipB.mkv', 'clipC']
  assert [source.num_frames(v) for v in range(3)] == [3, 5, 4]
  np.testing.assert_array_equal(source.frame(1, 4), frames[4])
  np.testing.assert_array_equal(source.frame(2, 3), np.full((5, 7, 3), 3, np.uint8))
  clone = pickle.loads(pickle.dumps(source))
  np.testing.assert_array_equal(clone.frame(0, 2), frames[2])
  assert source.labels(0, 0) is None and source.joint_names is None


def test_custom_videos_smaller_than_the_image_size_are_named(tmp_path, caplog):
  from ppl_jax import config as config_lib   # pylint: disable=g-import-not-at-top
  from ppl_jax import input_pipeline         # pylint: disable=g-import-not-at-top
  video.write_video(tmp_path / 'small.avi', np.zeros((3, 16, 16, 3), np.uint8), fps=5)
  video.write_video(tmp_path / 'wide.avi', np.zeros((3, 48, 80, 3), np.uint8), fps=5)
  video.write_video(tmp_path / 'large.avi', np.zeros((3, 64, 96, 3), np.uint8), fps=5)
  for t in range(3):
    save_image(tmp_path / 'frames' / f'{t}.png', (t, t, t), (20, 70))   # 20 wide, 70 high
  source = custom.CustomVideosSource(tmp_path)
  assert [source.frame_size(v) for v in range(4)] == [(20, 70), (96, 64), (16, 16), (80, 48)]
  data = config_lib.default_config().data
  data.name, data.root, data.image_size = 'custom', str(tmp_path), 64
  with caplog.at_level(logging.WARNING):
    input_pipeline.build_source(data, 'train')
  [record] = [r for r in caplog.records if 'upscaled' in r.getMessage()]
  message = record.getMessage()
  assert message.startswith('3 of 4 videos are smaller than config.data.image_size=64')
  for name in ('frames (20x70)', 'small.avi (16x16)', 'wide.avi (80x48)'):
    assert name in message
  assert 'large.avi' not in message
  caplog.clear()
  data.image_size = 16
  with caplog.at_level(logging.WARNING):
    input_pipeline.build_source(data, 'train')
  assert not [r for r in caplog.records if 'upscaled' in r.getMessage()]


def test_custom_single_video_file(tmp_path):
  frames = np.stack([np.full((4, 6, 3), 30 * t, np.uint8) for t in range(3)])
  video.write_video(tmp_path / 'one.avi', frames, fps=10)
  source = custom.CustomVideosSource(tmp_path / 'one.avi')
  assert source.num_videos == 1 and source.num_frames(0) == 3
  np.testing.assert_array_equal(source.frame(0, 1), frames[1])
  (tmp_path / 'one.gif').write_bytes(b'GIF89a')
  with pytest.raises(DataError, match='one.gif: not a supported video file'):
    custom.CustomVideosSource(tmp_path / 'one.gif')


def test_custom_max_open_closes_readers(tmp_path):
  frames = np.zeros((2, 4, 4, 3), np.uint8)
  for v in range(4):
    video.write_video(tmp_path / f'v{v}.avi', frames + v, fps=5)
  source = custom.CustomVideosSource(tmp_path, max_open=2)
  for v in range(4):
    assert source.frame(v, 1)[0, 0, 0] == v
  assert sum(c._container is not None for c in source._clips) == 2


def test_custom_bad_inputs(tmp_path, caplog):
  empty = tmp_path / 'empty'
  empty.mkdir()
  with pytest.raises(DataError, match='empty: the folder is empty'):
    custom.CustomVideosSource(empty)
  other = tmp_path / 'other'
  other.mkdir()
  (other / 'a.wmv').write_bytes(b'x')
  (other / 'b.txt').write_text('x')
  with pytest.raises(DataError, match=r"other: no videos of a supported type \(found \{'.wmv': 1, '.txt': 1\}\)"):
    custom.CustomVideosSource(other)
  mixed = tmp_path / 'mixed'
  mixed.mkdir()
  video.write_video(mixed / 'good.avi', np.zeros((3, 4, 4, 3), np.uint8), fps=5)
  (mixed / 'bad.mp4').write_bytes(np.random.default_rng(1).integers(0, 256, 2048, dtype=np.uint8).tobytes())
  with pytest.raises(DataError, match='bad.mp4: not a readable video'):
    custom.CustomVideosSource(mixed)
  with caplog.at_level(logging.WARNING):
    source = custom.CustomVideosSource(mixed, on_bad='warn')
  assert source.num_videos == 1
  assert 'bad.mp4' in caplog.text and 'skipped 1 of 2 videos' in caplog.text
  with pytest.raises(DataError, match='folder not found'):
    custom.CustomVideosSource(tmp_path / 'missing')


@pytest.mark.parametrize('damage', ['truncated', 'garbage', 'bad_crc'])
def test_custom_frame_folder_with_a_corrupt_frame(tmp_path, caplog, damage):
  folder = tmp_path / 'videos' / 'clip'
  folder.mkdir(parents=True)
  rng = np.random.default_rng(0)
  for i in range(5):
    save_image(folder / f'f{i}.png', tuple(int(c) for c in rng.integers(0, 255, 3)), (16, 12))
  bad = folder / 'f2.png'
  data = bad.read_bytes()
  if damage == 'truncated':
    bad.write_bytes(data[:len(data) // 2])
  elif damage == 'garbage':
    bad.write_bytes(rng.integers(0, 256, len(data), dtype=np.uint8).tobytes())
  else:   # one byte of the image data changed: the chunk's CRC no longer matches
    at = data.index(b'IDAT') + 6
    bad.write_bytes(data[:at] + bytes([data[at] ^ 0xFF]) + data[at + 1:])
  with pytest.raises(DataError, match='f2.png'):
    custom.CustomVideosSource(tmp_path / 'videos')
  with caplog.at_level(logging.WARNING):
    source = custom.CustomVideosSource(tmp_path / 'videos', on_bad='warn')
  assert source.num_frames(0) == 4 and 'skipped 1 of 5 frames' in caplog.text
  for i in range(4):   # every remaining frame decodes
    assert source.frame(0, i).shape == (12, 16, 3)


def test_custom_dlc_labels_on_video_frames(tmp_path):
  videos = tmp_path / 'videos'
  videos.mkdir()
  video.write_video(videos / 'mouse1.avi', np.zeros((6, 8, 8, 3), np.uint8), fps=5)
  csv = tmp_path / 'CollectedData_me.csv'
  csv.write_text('scorer,me,me,me,me\n'
                 'bodyparts,nose,nose,tail,tail\n'
                 'coords,x,y,x,y\n'
                 'labeled-data/mouse1/img0004.png,1.5,2.5,,\n'
                 'labeled-data/other/img0001.png,1,1,1,1\n')
  source = custom.CustomVideosSource(videos, labels=csv)
  assert source.labeled_frames == [(0, 4)]
  labels = source.labels(0, 4)
  assert labels.keypoints.tolist() == [[1.5, 2.5], [0.0, 0.0]]
  assert labels.visible.tolist() == [True, False]
  assert source.labels(0, 3) is None
  assert source.joint_names == ['nose', 'tail']
  csv.write_text('scorer,me,me\nbodyparts,nose,nose\ncoords,x,y\nlabeled-data/img01.png,1,2\n')
  with pytest.raises(DataError, match='LabeledFramesSource'):
    custom.CustomVideosSource(videos, labels=csv)


def test_custom_source_on_real_mirror_mouse_video():
  env = os.environ.get('PPL_SHARED_DIR')
  shared = Path(env) if env else Path(__file__).resolve().parents[2] / 'shared'
  root = shared / 'data' / 'mirror-mouse'
  if not (root / 'videos' / 'test_vid.mp4').is_file():
    pytest.skip(f'shared data not found at {root} (set PPL_SHARED_DIR)')
  source = custom.CustomVideosSource(root / 'videos')
  assert source.num_videos == 1 and source.num_frames(0) == 994
  assert source.frame(0, 993).shape == (406, 396, 3)
  # Its labelled images are not frames of this video (see the data README).
  with pytest.raises(DataError, match='LabeledFramesSource'):
    custom.CustomVideosSource(root / 'videos', labels=root / 'CollectedData.csv')
