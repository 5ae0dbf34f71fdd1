"""Tests of ppl_jax.data.video: PyAV probing, random access, writing, bad files."""

import os
import pickle
import threading
from pathlib import Path

import av
import numpy as np
import pytest

from ppl_jax.data import video
from ppl_jax.data.errors import DataError


def shared_dir() -> Path:
  env = os.environ.get('PPL_SHARED_DIR')
  return Path(env) if env else Path(__file__).resolve().parents[2] / 'shared'


def make_frames(num_frames, height, width):
  """Distinct frames (num_frames <= 30): smooth gradients plus a per-frame offset."""
  y, x = np.mgrid[0:height, 0:width]
  frames = []
  for t in range(num_frames):
    r = x * 150 // max(width - 1, 1) + 3 * t
    g = y * 100 // max(height - 1, 1) + 5 * t
    b = np.full_like(x, 40 + 7 * t)
    frames.append(np.stack([r, g, b], axis=-1).astype(np.uint8))
  return np.stack(frames)


def decode_all(path):
  """Independent reference: every frame by a plain sequential PyAV decode."""
  with av.open(str(path)) as container:
    return np.stack([f.to_ndarray(format='rgb24') for f in container.decode(video=0)])


@pytest.mark.parametrize('ext', ['mkv', 'avi'])
def test_lossless_roundtrip_random_access(tmp_path, ext):
  frames = make_frames(9, 18, 22)
  path = tmp_path / f'clip.{ext}'
  video.write_video(path, frames, fps=12.5, options={'g': '3'})
  info = video.probe(path)
  assert (info.num_frames, info.height, info.width) == (9, 18, 22)
  assert info.fps == pytest.approx(12.5)
  reader = video.VideoReader(path, cache_size=2)
  assert reader.num_frames == 9
  order = [5, 0, 8, 3, 3, 7, 1, 2, 6, 4, 0, 8]
  for i in order:
    np.testing.assert_array_equal(reader.frame(i), frames[i])


def test_mkv_without_frame_count_is_counted_by_decoding(tmp_path):
  frames = make_frames(7, 8, 10)
  path = tmp_path / 'clip.mkv'
  video.write_video(path, frames, fps=25)
  with av.open(str(path)) as container:
    assert container.streams.video[0].frames == 0   # the case being tested
  assert video.probe(path).num_frames == 7


def test_lossy_mp4_with_keyframes(tmp_path):
  frames = make_frames(30, 32, 48)
  path = tmp_path / 'clip.mp4'
  video.write_video(path, frames, fps=30, crf=10, options={'g': '8'})
  reference = decode_all(path)
  assert reference.shape == (30, 32, 48, 3)
  reader = video.VideoReader(path, cache_size=4)
  assert reader.num_frames == 30
  assert (reader.info.width, reader.info.height) == (48, 32)
  assert len(reader._index.keyframes) >= 3   # seeking across GOPs is exercised
  rng = np.random.default_rng(0)
  for i in list(rng.permutation(30)) + [29, 0, 15, 16, 17, 3]:
    got = reader.frame(int(i))
    np.testing.assert_array_equal(got, reference[i])
    # Lossy codec: close to the originals (mean error of a few grey levels).
    assert np.abs(got.astype(int) - frames[i]).mean() < 3.0


def test_odd_size_mp4_uses_yuv444(tmp_path):
  frames = make_frames(4, 15, 21)
  path = tmp_path / 'odd.mp4'
  video.write_video(path, frames, fps=10, crf=0)
  got = video.VideoReader(path).frame(2)
  assert got.shape == (15, 21, 3)
  assert np.abs(got.astype(int) - frames[2]).max() <= 3


def test_pickle_drops_open_container(tmp_path):
  frames = make_frames(6, 8, 8)
  path = tmp_path / 'clip.avi'
  video.write_video(path, frames, fps=5)
  reader = video.VideoReader(path)
  reader.frame(2)
  assert reader._container is not None
  clone = pickle.loads(pickle.dumps(reader))
  assert clone._container is None
  np.testing.assert_array_equal(clone.frame(5), frames[5])
  np.testing.assert_array_equal(reader.frame(3), frames[3])


def test_threads_share_a_reader(tmp_path):
  frames = make_frames(12, 8, 8)
  path = tmp_path / 'clip.mkv'
  video.write_video(path, frames, fps=5, options={'g': '4'})
  reader = video.VideoReader(path, cache_size=1)
  errors = []

  def work(seed):
    rng = np.random.default_rng(seed)
    for i in rng.integers(0, 12, 20):
      if not np.array_equal(reader.frame(int(i)), frames[i]):
        errors.append(int(i))

  threads = [threading.Thread(target=work, args=(s,)) for s in range(4)]
  for t in threads:
    t.start()
  for t in threads:
    t.join()
  assert not errors


def test_corrupt_video_error_names_file(tmp_path):
  path = tmp_path / 'broken.mp4'
  path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
  with pytest.raises(DataError, match='broken.mp4.*re-encode'):
    video.probe(path)


def test_truncated_video_error_names_file(tmp_path):
  good = tmp_path / 'good.mp4'
  video.write_video(good, make_frames(10, 16, 16), fps=10)
  cut = tmp_path / 'cut.mp4'
  cut.write_bytes(good.read_bytes()[:len(good.read_bytes()) // 2])
  with pytest.raises(DataError, match='cut.mp4'):
    video.VideoReader(cut)


def test_missing_video_and_out_of_range(tmp_path):
  with pytest.raises(DataError, match='nothere.mp4.*not found'):
    video.probe(tmp_path / 'nothere.mp4')
  path = tmp_path / 'clip.avi'
  video.write_video(path, make_frames(3, 4, 4), fps=5)
  with pytest.raises(IndexError, match='frame 3 out of range'):
    video.VideoReader(path).frame(3)


def test_write_video_rejects_bad_frames(tmp_path):
  with pytest.raises(ValueError, match='uint8'):
    video.write_video(tmp_path / 'a.avi', [np.zeros((4, 4, 3), np.float32)], fps=5)
  with pytest.raises(ValueError, match='all frames must match'):
    video.write_video(tmp_path / 'b.avi', [np.zeros((4, 4, 3), np.uint8),
                                           np.zeros((4, 6, 3), np.uint8)], fps=5)
  with pytest.raises(ValueError, match='extension'):
    video.write_video(tmp_path / 'c.gif', [np.zeros((4, 4, 3), np.uint8)], fps=5)


def test_natural_sort_of_frame_names(tmp_path):
  for name in ['10.png', '2.png', '1.png', 'notes.txt']:
    (tmp_path / name).write_bytes(b'')
  assert [p.name for p in video.list_images(tmp_path)] == ['1.png', '2.png', '10.png']


def test_real_mirror_mouse_video():
  path = shared_dir() / 'data' / 'mirror-mouse' / 'videos' / 'test_vid.mp4'
  if not path.is_file():
    pytest.skip(f'shared data not found at {path} (set PPL_SHARED_DIR)')
  reader = video.VideoReader(path)
  assert reader.num_frames == 994
  assert (reader.info.height, reader.info.width) == (406, 396)
  assert reader.info.fps == pytest.approx(250)
  wanted = [993, 5, 700, 250, 251, 0]
  with av.open(str(path)) as container:
    reference = {}
    for i, f in enumerate(container.decode(video=0)):
      if i in wanted:
        reference[i] = f.to_ndarray(format='rgb24')
  for i in wanted:
    got = reader.frame(i)
    assert got.shape == (406, 396, 3) and got.dtype == np.uint8
    np.testing.assert_array_equal(got, reference[i])
