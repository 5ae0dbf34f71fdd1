"""Tests of the synthetic benchmark source (ppl_jax/data/synthetic.py)."""

import concurrent.futures
import itertools
import multiprocessing
import pickle

import numpy as np
import pytest
from scipy.sparse import csgraph

from ppl_jax import config as config_lib
from ppl_jax.data import base
from ppl_jax.data import synthetic

KINDS = ('humanoid', 'quadruped')


def _source(kind='humanoid', num_videos=4, frames=24, size=96, seed=3, split='train'):
  return synthetic.SyntheticVideos(kind, num_videos, frames, size, seed, split)


def _segment_distance(points, a, b):
  """float64 brute force: distance [P] from points [P, 2] to segment ab."""
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  ab = b - a
  denom = ab @ ab
  t = np.zeros(len(points)) if denom == 0 else np.clip((points - a) @ ab / denom, 0, 1)
  return np.linalg.norm(points - (a + t[:, None] * ab), axis=1)


@pytest.mark.parametrize('kind', KINDS)
def test_deterministic_in_any_order_and_instance(kind):
  first, second = _source(kind), _source(kind)
  pairs = [(v, t) for v in range(4) for t in (0, 7, 23)]
  forward = {p: first.frame(*p) for p in pairs}
  order = np.random.default_rng(0).permutation(len(pairs))
  for k in order:
    np.testing.assert_array_equal(second.frame(*pairs[k]), forward[pairs[k]])
  # Regenerating a video after cache eviction gives the same pixels and labels.
  second._cache_entries = 1
  second._cache.clear()
  for v in (3, 0, 2):
    np.testing.assert_array_equal(second.frame(v, 7), forward[(v, 7)])
    np.testing.assert_array_equal(second.labels(v, 7).keypoints,
                                  first.labels(v, 7).keypoints)


@pytest.mark.parametrize('kind', KINDS)
def test_videos_splits_and_seeds_differ(kind):
  train, test = _source(kind, split='train'), _source(kind, split='test')
  other_seed = _source(kind, seed=4)
  frames = [train.frame(v, 5) for v in range(4)]
  for i, j in itertools.combinations(range(4), 2):
    assert not np.array_equal(frames[i], frames[j])
  for v in range(4):
    assert not np.array_equal(test.frame(v, 5), frames[v])
    assert not np.array_equal(other_seed.frame(v, 5), frames[v])
    assert not np.array_equal(test.background(v), train.background(v))


@pytest.mark.parametrize('kind,size', [('humanoid', 64), ('humanoid', 128),
                                       ('quadruped', 64), ('quadruped', 128)])
def test_figure_lies_on_ground_truth_skeleton(kind, size):
  source = _source(kind, num_videos=6, frames=40, size=size)
  rows, cols = np.mgrid[:size, :size]
  pixels = np.stack([cols.ravel(), rows.ravel()], axis=1).astype(np.float64)
  rng = np.random.default_rng(1)
  for _ in range(8):
    v, t = int(rng.integers(6)), int(rng.integers(40))
    image, background = source.frame(v, t), source.background(v)
    labels = source.labels(v, t)
    keypoints = labels.keypoints.astype(np.float64)
    assert labels.keypoints.shape == (len(source.joint_names), 2)
    assert labels.visible.all()
    changed = np.any(image != background, axis=-1)
    # Every joint and every edge midpoint is covered by the figure.
    edges = np.array(source.skeleton)
    probes = np.concatenate([keypoints, keypoints[edges].mean(axis=1)])
    c, r = np.rint(probes).astype(int).T
    assert changed[r, c].all(), (v, t)
    # And the figure is nowhere else: changed pixels lie within the largest limb
    # radius (+1 px of antialiasing) of the skeleton's segments or joints.
    radius = source._video(v)[2][t].max() + 1.0
    distance = np.min([_segment_distance(pixels, keypoints[i], keypoints[j])
                       for i, j in source.skeleton], axis=0).reshape(size, size)
    assert not changed[distance > radius].any(), (v, t)
    # Clear contrast: figure pixels differ from the background in luminance.
    luma = np.array([0.299, 0.587, 0.114])
    core = distance < 0.5
    gap = np.abs((image[core].astype(float) - background[core]) @ luma)
    assert gap.mean() > 60, (v, t, gap.mean())


def test_paint_matches_brute_force():
  rng = np.random.default_rng(2)
  height, width = 20, 27
  canvas = rng.uniform(0, 255, (height, width, 3)).astype(np.float32)
  colour = np.array([10.0, 200.0, 90.0], np.float32)
  capsules = [((4.3, 5.7), (20.2, 12.9), 2.2), ((11.0, 3.0), (11.0, 3.0), 3.4),
              ((-3.0, 15.0), (8.5, 22.0), 1.6)]  # a disc, one partly outside
  painted = canvas.copy()
  synthetic._paint(painted, capsules, colour)
  rows, cols = np.mgrid[:height, :width]
  pixels = np.stack([cols.ravel(), rows.ravel()], axis=1).astype(np.float64)
  coverage = np.max([np.clip(r + 0.5 - _segment_distance(pixels, a, b), 0, 1)
                     for a, b, r in capsules], axis=0).reshape(height, width, 1)
  expected = canvas + coverage * (colour - canvas)
  np.testing.assert_allclose(painted, expected, atol=2e-3)


@pytest.mark.parametrize('kind', KINDS)
def test_motion_smooth_inside_frame_and_rigid(kind):
  size, frames = 128, 64
  source = _source(kind, num_videos=3, frames=frames, size=size)
  edges = np.array(source.skeleton)
  for v in range(3):
    track = np.stack([source.labels(v, t).keypoints for t in range(frames)])
    assert track.shape == (frames, len(source.joint_names), 2)
    assert track.min() >= 0 and track.max() <= size - 1
    step = np.linalg.norm(np.diff(track, axis=0), axis=-1)   # [T-1, G]
    assert step.max() < 0.1 * size, step.max()
    assert step.mean() > 0.002 * size, step.mean()
    # Articulated rigid body up to a global scale: all limb lengths of a frame
    # change by the same factor.
    lengths = np.linalg.norm(track[:, edges[:, 0]] - track[:, edges[:, 1]], axis=-1)
    ratio = lengths / lengths[:1]
    np.testing.assert_allclose(ratio, ratio[:, :1] * np.ones_like(ratio), rtol=1e-4)
    # The whole figure, not just its joints, stays inside: the border is background.
    for t in (0, frames // 2, frames - 1):
      diff = np.any(source.frame(v, t) != source.background(v), axis=-1)
      assert not (diff[0].any() or diff[-1].any() or diff[:, 0].any()
                  or diff[:, -1].any())


@pytest.mark.parametrize('kind', KINDS)
def test_skeleton_is_a_connected_tree(kind):
  source = _source(kind)
  names, edges = source.joint_names, source.skeleton
  count = len(names)
  assert len(set(names)) == count
  assert count >= (12 if kind == 'humanoid' else 14)
  pairs = {tuple(sorted(e)) for e in edges}
  assert len(pairs) == len(edges)
  for i, j in edges:
    assert 0 <= i < count and 0 <= j < count and i != j
  adjacency = np.zeros((count, count))
  for i, j in edges:
    adjacency[i, j] = adjacency[j, i] = 1
  components, _ = csgraph.connected_components(adjacency, directed=False)
  assert components == 1 and len(edges) == count - 1


def test_humanoid_and_quadruped_joint_lists():
  assert {'head', 'neck', 'pelvis', 'left_wrist', 'right_ankle'} <= set(
      synthetic.HUMANOID_JOINTS)
  assert {'head', 'withers', 'croup', 'tail_tip', 'hind_left_paw'} <= set(
      synthetic.QUADRUPED_JOINTS)


def test_pickle_round_trip():
  source = _source('quadruped', num_videos=3, frames=10, size=64)
  expected = [source.frame(v, 4) for v in range(3)]  # fills the cache
  blob = pickle.dumps(source)
  assert len(blob) < 2000  # caches stay behind
  restored = pickle.loads(blob)
  for v in range(3):
    np.testing.assert_array_equal(restored.frame(v, 4), expected[v])
  assert restored.skeleton == source.skeleton


def test_spawned_process_renders_the_same_frames():
  source = _source('humanoid', num_videos=2, frames=10, size=64)
  context = multiprocessing.get_context('spawn')  # as grain starts its workers
  with concurrent.futures.ProcessPoolExecutor(1, mp_context=context) as pool:
    remote = pool.submit(source.frame, 1, 6).result(timeout=120)
  np.testing.assert_array_equal(remote, source.frame(1, 6))


def test_from_config_reads_fields():
  config = config_lib.default_config()
  config.data.synthetic.kind = 'quadruped'
  config.data.synthetic.num_train_videos = 5
  config.data.synthetic.num_test_videos = 2
  config.data.synthetic.frames_per_video = 9
  config.data.synthetic.render_size = 64
  config.data.synthetic.seed = 1
  train = synthetic.from_config(config.data, 'train')
  test = synthetic.from_config(config.data, 'test')
  assert isinstance(train, base.VideoSource)
  assert (train.num_videos, test.num_videos) == (5, 2)
  assert train.num_frames(0) == 9 and train.kind == 'quadruped'
  assert train.frame(4, 8).shape == (64, 64, 3) and train.frame(4, 8).dtype == np.uint8
  assert len(train.joint_names) == 18
  reference = synthetic.SyntheticVideos('quadruped', 5, 9, 64, seed=1, split='train')
  np.testing.assert_array_equal(train.frame(3, 2), reference.frame(3, 2))
  config.seed = 7   # the initialisation seed does not change the videos
  np.testing.assert_array_equal(synthetic.from_config(config.data, 'train').frame(3, 2),
                                reference.frame(3, 2))


@pytest.mark.parametrize('field,value,message', [
    ('render_size', 32, 'render_size'), ('render_size', 512, 'render_size'),
    ('kind', 'robot', 'kind'), ('frames_per_video', 1, 'frames_per_video'),
    ('num_train_videos', 0, 'num_train_videos')])
def test_bad_config_names_the_field(field, value, message):
  config = config_lib.default_config()
  config.data.synthetic[field] = value
  with pytest.raises(ValueError, match=f'config.data.synthetic.{message}'):
    synthetic.from_config(config.data, 'train')


def test_bad_split_and_indices():
  with pytest.raises(ValueError, match='split'):
    synthetic.from_config(config_lib.default_config().data, 'validation')
  source = _source(num_videos=2, frames=5, size=64)
  with pytest.raises(IndexError, match='video 2'):
    source.frame(2, 0)
  with pytest.raises(IndexError, match='frame 5'):
    source.labels(1, 5)
