"""Tests of ppl_jax.input_pipeline on a tiny in-test source with known content."""

import collections
import copy
import itertools
import logging
import pickle

from absl import flags
import ml_collections
import numpy as np
import pytest
from PIL import Image

from ppl_jax import config as config_lib
from ppl_jax import input_pipeline
from ppl_jax.data import base


class CodedVideos(base.VideoSource):
  """Frames whose channels code (video, frame); labels on every other frame.

  Channel 0 = 10 * video + 5, channel 1 = 3 * frame + 7 (constant, so any resize keeps
  them), channel 2 = a column ramp (for flips). Frames are H x W = 16 x 24.
  """

  def __init__(self, lengths, height=16, width=24):
    self.lengths = list(lengths)
    self.height, self.width = height, width

  @property
  def num_videos(self):
    return len(self.lengths)

  def num_frames(self, video):
    return self.lengths[video]

  def frame(self, video, index):
    assert 0 <= index < self.lengths[video], (video, index)
    out = np.empty((self.height, self.width, 3), np.uint8)
    out[..., 0] = 10 * video + 5
    out[..., 1] = 3 * index + 7
    out[..., 2] = (np.arange(self.width) * 10 + 1)[None, :]
    return out

  def labels(self, video, index):
    if index % 2:
      return None
    keypoints = np.array([[0.0, 0.0], [23.0, 15.0], [index, video], [5.5, 2.0]], np.float32)
    visible = np.array([True, True, True, index != 2])
    return base.FrameLabels(keypoints=np.where(visible[:, None], keypoints, 0.0),
                            visible=visible)

  def video_name(self, video):
    return f'clip_{video}.mp4'


def decode(image):
  """float32 [..., S, S, 3] -> (video, frame) arrays from the constant channels."""
  pixels = np.round((image + 1.0) * 127.5).astype(int)
  return (pixels[..., 0, 0, 0] - 5) // 10, (pixels[..., 0, 0, 1] - 7) // 3


def make_config(**data):
  config = config_lib.default_config()
  config.batch_size = 4
  config.data.image_size = 16
  config.data.num_workers = 0
  config.data.update(data)
  return config


def take(ds, n):
  return list(itertools.islice(iter(ds), n))


def test_eval_keypoints_and_padding():
  source = CodedVideos([5, 3])  # labelled: (0,0) (0,2) (0,4) (1,0) (1,2)
  ds = input_pipeline.create_eval_dataset(make_config(), source, batch_size=4)
  batches = list(ds)
  assert len(batches) == 2
  b = {k: np.concatenate([x[k] for x in batches]) for k in batches[0]}
  np.testing.assert_array_equal(b['valid'], [True] * 5 + [False] * 3)
  np.testing.assert_array_equal(b['video'], [0, 0, 0, 1, 1, -1, -1, -1])
  np.testing.assert_array_equal(b['frame'], [0, 2, 4, 0, 2, -1, -1, -1])
  assert b['image'].shape == (8, 16, 16, 3) and b['image'].dtype == np.float32
  assert b['keypoints'].dtype == np.float32 and b['visible'].dtype == bool
  video, frame = decode(b['image'][:5])
  np.testing.assert_array_equal(video, b['video'][:5])
  np.testing.assert_array_equal(frame, b['frame'][:5])
  # Hand-computed: x = (2 px + 1) / 24 - 1, y = (2 py + 1) / 16 - 1 on a 24 x 16 frame.
  first = b['keypoints'][0]  # frame (0, 0)
  np.testing.assert_allclose(first[0], [1 / 24 - 1, 1 / 16 - 1], atol=1e-6)
  np.testing.assert_allclose(first[1], [47 / 24 - 1, 31 / 16 - 1], atol=1e-6)
  np.testing.assert_allclose(first[3], [12 / 24 - 1, 5 / 16 - 1], atol=1e-6)
  np.testing.assert_allclose(b['keypoints'][4, 2], [5 / 24 - 1, 3 / 16 - 1], atol=1e-6)
  # Frame (0, 2): joint 3 invisible -> 0 and visible False.
  assert not b['visible'][1, 3] and np.all(b['keypoints'][1, 3] == 0)
  assert b['visible'][:5, :3].all() and not b['valid'][5:].any()


def test_eval_keypoints_resolution_independent():
  small = CodedVideos([1], height=16, width=24)
  large = CodedVideos([1], height=32, width=48)
  large.labels = lambda v, t: base.FrameLabels(
      keypoints=2 * small.labels(v, t).keypoints + 0.5, visible=small.labels(v, t).visible)
  a = next(iter(input_pipeline.create_eval_dataset(make_config(), small, batch_size=1)))
  b = next(iter(input_pipeline.create_eval_dataset(make_config(), large, batch_size=1)))
  np.testing.assert_allclose(a['keypoints'], b['keypoints'], atol=1e-6)


def test_pair_constraints():
  source = CodedVideos([12, 9, 20])
  config = make_config(min_frame_gap=3, max_frame_gap=5)
  config.batch_size = 16
  seen_gaps = set()
  for batch in take(input_pipeline.create_train_dataset(config, source, seed=1), 40):
    v, t = decode(batch['image'])
    v_ref, t_ref = decode(batch['reference'])
    np.testing.assert_array_equal(v, v_ref)
    gap = np.abs(t - t_ref)
    assert np.all(gap >= 3) and np.all(gap <= 5), gap
    assert np.all(t < np.take(source.lengths, v)) and np.all(t_ref < np.take(source.lengths, v))
    seen_gaps.update((t_ref - t).tolist())
  assert seen_gaps == {-5, -4, -3, 3, 4, 5}


def test_sample_reference_is_uniform_over_valid_frames():
  rng = np.random.default_rng(0)
  draws = [input_pipeline.sample_reference(4, 10, 2, 3, rng) for _ in range(4000)]
  values, counts = np.unique(draws, return_counts=True)
  np.testing.assert_array_equal(values, [1, 2, 6, 7])  # brute force: 2 <= |4 - r| <= 3
  assert counts.min() > 850 and counts.max() < 1150


def test_pair_index_skips_frames_without_reference():
  # 5 frames, gap >= 3: frames 0, 1 (refs 3.., 4) and 3, 4 (refs 0, 1) only.
  index = input_pipeline.pair_index(CodedVideos([5]), min_frame_gap=3)
  np.testing.assert_array_equal(index, [[0, 0], [0, 1], [0, 3], [0, 4]])


def test_flip_moves_both_frames_together():
  source = CodedVideos([6, 6], height=16, width=16)
  config = make_config(random_flip=True)
  original = input_pipeline.to_float(source.frame(0, 0))[..., 2]
  flips = []
  for batch in take(input_pipeline.create_train_dataset(config, source, seed=3), 10):
    for image, reference in zip(batch['image'], batch['reference']):
      flipped = bool(np.array_equal(image[..., 2], original[:, ::-1]))
      assert flipped or np.array_equal(image[..., 2], original)
      assert np.array_equal(reference[..., 2], image[..., 2])  # flipped together
      flips.append(flipped)
  assert 0.25 < np.mean(flips) < 0.75


def test_masked_self_zeroes_exact_block_fraction():
  source = CodedVideos([3], height=32, width=32)
  config = make_config()
  config.data.image_size = 32
  config.model.context = 'masked_self'
  config.model.mask_grid = 4
  config.model.mask_sampling = 'exact'
  config.model.mask_ratio = 0.5
  masks = []
  for batch in take(input_pipeline.create_train_dataset(config, source, seed=0), 3):
    for image, reference in zip(batch['image'], batch['reference']):
      blocks = reference.reshape(4, 8, 4, 8, 3).transpose(0, 2, 1, 3, 4).reshape(16, -1)
      image_blocks = image.reshape(4, 8, 4, 8, 3).transpose(0, 2, 1, 3, 4).reshape(16, -1)
      zero = np.all(blocks == 0, axis=1)
      assert zero.sum() == 8  # round(0.5 * 16)
      np.testing.assert_array_equal(blocks[~zero], image_blocks[~zero])
      masks.append(zero)
  assert len({m.tobytes() for m in masks}) > 1  # masks differ between elements


def test_block_mask_grid_is_blocks_per_side():
  # The release's block=16 at 128 px: 16 x 16 blocks of 8 px, each constant.
  mask = input_pipeline.block_mask(128, 16, 0.8, np.random.default_rng(0))
  blocks = mask.reshape(16, 8, 16, 8).transpose(0, 2, 1, 3).reshape(256, 64)
  assert np.all(blocks == blocks[:, :1])
  exact = input_pipeline.block_mask(128, 16, 0.8, np.random.default_rng(0), sampling='exact')
  assert (exact[::8, ::8] == 0).sum() == round(0.8 * 256)
  with pytest.raises(ValueError, match='mask_grid=5'):
    input_pipeline.block_mask(128, 5, 0.8, np.random.default_rng(0))


def test_block_mask_bernoulli_drops_blocks_independently():
  rng = np.random.default_rng(1)
  dropped = np.stack([input_pipeline.block_mask(16, 4, 0.8, rng)[::4, ::4] == 0
                      for _ in range(2000)]).reshape(2000, 16)
  counts = dropped.sum(axis=1)
  # Binomial(16, 0.8): mean 12.8, variance 16 * 0.8 * 0.2 = 2.56 (an exact count has 0).
  assert abs(counts.mean() - 12.8) < 0.1
  assert abs(counts.var() - 2.56) < 0.3
  # Independent blocks: the correlation between two blocks is ~0.
  assert abs(np.corrcoef(dropped[:, 0], dropped[:, 5])[0, 1]) < 0.08


def test_determinism_and_seed():
  source = CodedVideos([7, 9, 5])
  config = make_config(random_flip=True)
  a = take(input_pipeline.create_train_dataset(config, source, seed=5), 6)
  b = take(input_pipeline.create_train_dataset(config, source, seed=5), 6)
  c = take(input_pipeline.create_train_dataset(config, source, seed=6), 6)
  for x, y in zip(a, b):
    np.testing.assert_array_equal(x['image'], y['image'])
    np.testing.assert_array_equal(x['reference'], y['reference'])
  assert not all(np.array_equal(x['reference'], y['reference']) for x, y in zip(a, c))


def test_per_process_slices_are_disjoint_and_cover():
  source = CodedVideos([6, 6])  # 12 frames, all with references
  config = make_config()
  config.batch_size = 4  # 2 per process; 6 elements each = one epoch = 3 batches
  sets = []
  for process in range(2):
    ds = input_pipeline.create_train_dataset(config, source, seed=0, process_index=process,
                                             process_count=2)
    batches = take(ds, 3)
    assert batches[0]['image'].shape == (2, 16, 16, 3)
    v, t = decode(np.concatenate([b['image'] for b in batches]))
    elements = set(zip(v.tolist(), t.tolist()))
    assert len(elements) == 6  # one epoch of this process, no repeats
    sets.append(elements)
  assert not sets[0] & sets[1]
  assert sets[0] | sets[1] == {(v, t) for v in range(2) for t in range(6)}


def _check_resume(num_workers):
  source = CodedVideos([8, 6, 7])
  config = make_config(random_flip=True, num_workers=num_workers)
  ds = input_pipeline.create_train_dataset(config, source, seed=2)
  it = iter(ds)
  for _ in range(3):
    next(it)
  state = it.get_state()
  expected = [next(it) for _ in range(4)]
  it2 = iter(input_pipeline.create_train_dataset(config, source, seed=2))
  it2.set_state(state)
  for want in expected:
    got = next(it2)
    np.testing.assert_array_equal(got['image'], want['image'])
    np.testing.assert_array_equal(got['reference'], want['reference'])


def test_resume_exact_in_process():
  _check_resume(0)


def test_resume_exact_with_two_workers():
  if not flags.FLAGS.is_parsed():  # grain's worker processes read absl flags
    flags.FLAGS.mark_as_parsed()
  _check_resume(2)


def test_orbax_checkpoint_of_iterator(tmp_path):
  grain = pytest.importorskip('grain')
  ocp = pytest.importorskip('orbax.checkpoint')
  source = CodedVideos([8, 6, 7])
  config = make_config(random_flip=True)
  it = iter(input_pipeline.create_train_dataset(config, source, seed=4))
  next(it)
  checkpointer = ocp.Checkpointer(grain.checkpoint.CheckpointHandler())
  checkpointer.save(tmp_path / 'data_iter', args=grain.checkpoint.CheckpointSave(it))
  expected = [next(it) for _ in range(2)]
  it2 = iter(input_pipeline.create_train_dataset(config, source, seed=4))
  checkpointer.restore(tmp_path / 'data_iter', args=grain.checkpoint.CheckpointRestore(it2))
  for want in expected:
    np.testing.assert_array_equal(next(it2)['reference'], want['reference'])


def test_too_short_video_error_and_warning(caplog):
  source = CodedVideos([6, 2, 1])
  with pytest.raises(ValueError, match=r"'clip_1.mp4' has 2 frame\(s\).*at least 3"):
    input_pipeline.pair_index(source, min_frame_gap=2)
  with caplog.at_level(logging.WARNING):
    index = input_pipeline.pair_index(source, min_frame_gap=2, on_bad_video='warn')
  assert set(index[:, 0].tolist()) == {0}
  assert 'Skipped 2 of 3 videos' in caplog.text
  # masked_self needs one frame per video.
  assert len(input_pipeline.pair_index(source, context='masked_self')) == 9


def test_build_source_errors():
  data = config_lib.default_config().data
  data.name = 'kinetics'
  with pytest.raises(ValueError, match='config.data.name'):
    input_pipeline.build_source(data, 'train')
  data.name = 'h36m'
  data.root = ''
  with pytest.raises(ValueError, match='config.data.root'):
    input_pipeline.build_source(data, 'train')
  data.root = '/nonexistent/h36m'
  with pytest.raises(FileNotFoundError, match='config.data.root'):
    input_pipeline.build_source(data, 'train')


def test_synthetic_source_through_pipeline():
  pytest.importorskip('ppl_jax.data.synthetic')
  config = make_config()
  config.data.synthetic = ml_collections.ConfigDict(dict(
      config.data.synthetic, num_train_videos=2, num_test_videos=1, frames_per_video=4,
      render_size=64))
  source = input_pipeline.build_source(config.data, 'train')
  batch = next(iter(input_pipeline.create_train_dataset(config, source, seed=0)))
  assert batch['image'].shape == (4, 16, 16, 3) and batch['reference'].shape == (4, 16, 16, 3)
  assert batch['image'].min() >= -1 and batch['image'].max() <= 1
  test_source = input_pipeline.build_source(config.data, 'test')
  eval_batch = next(iter(input_pipeline.create_eval_dataset(config, test_source,
                                                            batch_size=2)))
  assert eval_batch['valid'].all()
  for i in range(2):
    v, t = int(eval_batch['video'][i]), int(eval_batch['frame'][i])
    height, width = test_source.frame(v, t).shape[:2]
    pixels = test_source.labels(v, t).keypoints.astype(np.float64)
    want = (2 * pixels + 1) / np.array([width, height]) - 1  # half-pixel convention
    np.testing.assert_allclose(eval_batch['keypoints'][i], want, atol=1e-6)


class CountingVideos(CodedVideos):
  """CodedVideos with a noise texture (so resizing matters) that counts frame reads."""

  def __init__(self, lengths):
    super().__init__(lengths, height=40, width=52)
    self.reads = collections.Counter()

  def frame(self, video, index):
    self.reads[video] += 1
    out = super().frame(video, index)
    noise = np.random.default_rng(100 * video + index).integers(0, 256, out.shape[:2])
    out[..., 2] = noise.astype(np.uint8)
    return out


def test_frame_cache_decodes_each_video_once_and_changes_no_batch():
  lengths = [7, 9, 5]
  config = make_config(random_flip=True, frame_cache_bytes=10**6)
  config.model.context = 'masked_self'
  config.model.mask_grid = 4
  config.loss.foreground_weight = 1.0   # the median background reads frames too
  plain = take(input_pipeline.create_train_dataset(_without_cache(config),
                                                   CountingVideos(lengths), seed=3), 8)
  source = CountingVideos(lengths)
  cached = take(input_pipeline.create_train_dataset(config, source, seed=3), 8)
  for x, y in zip(plain, cached):
    assert x.keys() == y.keys()
    for key in x:
      np.testing.assert_array_equal(x[key], y[key], err_msg=key)
  # Every video was read whole exactly once, in order, whatever the batches asked for.
  assert dict(source.reads) == {v: n for v, n in enumerate(lengths)}


def _without_cache(config):
  plain = copy.deepcopy(config)
  plain.data.frame_cache_bytes = 0
  return plain


def test_frame_cache_frames_and_budget(caplog):
  source = CountingVideos([3, 2])
  cache = input_pipeline.ResizedFrames(source, 16)
  assert cache.nbytes() == 5 * 16 * 16 * 3
  for video, t in [(1, 1), (0, 2), (1, 0)]:
    want = np.asarray(Image.fromarray(CountingVideos([3, 2]).frame(video, t)).resize(
        (16, 16), Image.BILINEAR))
    np.testing.assert_array_equal(cache.frame(video, t), want)
  clone = pickle.loads(pickle.dumps(cache))     # grain workers: an empty cache of their own
  assert clone._frames == {} and clone.frame(0, 1).shape == (16, 16, 3)
  data = make_config(frame_cache_bytes=5 * 16 * 16 * 3).data
  assert isinstance(input_pipeline.cached_frames(source, data), input_pipeline.ResizedFrames)
  data.frame_cache_bytes -= 1
  with caplog.at_level(logging.WARNING):
    assert input_pipeline.cached_frames(source, data) is source
  assert 'more than config.data.frame_cache_bytes=3839' in caplog.text
  assert 'Raise config.data.frame_cache_bytes' in caplog.text
