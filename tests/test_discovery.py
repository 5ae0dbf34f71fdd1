"""Foreground masks, the foreground loss, part coverage, heatmap reliance, provenance."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ppl_jax import input_pipeline
from ppl_jax import provenance
from ppl_jax import train
from ppl_jax.data import background
from ppl_jax.data import synthetic
from ppl_jax.evaluation import discovery
from ppl_jax.losses import objective
from ppl_jax.models import build_model
from ppl_jax.models.ppl import PPL

from conftest import tiny_config


def test_background_is_the_per_pixel_median():
  frames = np.random.default_rng(0).integers(0, 256, (7, 5, 6, 3)).astype(np.uint8)
  np.testing.assert_array_equal(background.estimate_background(frames),
                                np.median(frames.astype(np.float64), axis=0))
  with pytest.raises(ValueError, match='uint8 frames'):
    background.estimate_background(frames.astype(np.float32))


def test_foreground_mask_thresholds_the_largest_channel_difference():
  bg = np.full((1, 3, 3), 100, np.uint8)
  image = bg.copy()
  image[0, 0, 2] = 126   # 26 / 255 > 0.1 in one channel
  image[0, 1, 0] = 125   # 25 / 255 < 0.1
  image[0, 2, 1] = 74    # darker by 26
  np.testing.assert_array_equal(background.foreground_mask(image, bg, 0.1), [[1, 0, 1]])


def test_frame_indices_are_evenly_spaced_and_distinct():
  np.testing.assert_array_equal(background.frame_indices(5, 32), [0, 1, 2, 3, 4])
  np.testing.assert_array_equal(background.frame_indices(33, 3), [0, 16, 32])


def test_train_pipeline_carries_the_median_background_foreground():
  config = tiny_config()
  config.loss.foreground_weight = 1.0
  config.data.random_flip = True
  source = synthetic.from_config(config.data, 'train')
  size = config.data.image_size
  medians = {}
  for v in range(source.num_videos):
    frames = np.stack([input_pipeline.resize_uint8(source.frame(v, t), size)
                       for t in range(source.num_frames(v))]).astype(np.int16)
    # frames_per_video = 8 <= background_frames: the lower median of all 8 frames.
    medians[v] = np.sort(frames, axis=0)[3]
  batches = list(itertools.islice(
      input_pipeline.create_train_dataset(config, source, seed=0), 2))
  checked = 0
  for batch in batches:
    for image, mask in zip(batch['image'], batch['foreground']):
      pixels = np.round((image + 1) * 127.5).astype(np.int16)
      # Find the video whose median explains the mask (flips make it mirror-symmetric).
      candidates = []
      for v, median in medians.items():
        for bg in (median, median[:, ::-1]):
          expected = (np.abs(pixels - bg).max(-1) > 0.1 * 255).astype(np.float32)
          candidates.append(np.array_equal(expected, mask))
      assert any(candidates)
      checked += 1
  assert checked == 2 * config.batch_size
  assert 0.02 < np.mean(batches[0]['foreground']) < 0.6


def test_foreground_loss_against_numpy():
  rng = np.random.default_rng(3)
  keypoints = rng.uniform(-1, 1, (2, 3, 2)).astype(np.float32)
  mask = (rng.random((2, 4, 5)) < 0.4).astype(np.float32)
  mask[1] = 0.0   # a frame without foreground adds 0
  expected = []
  for b in range(2):
    total, count = 0.0, 0
    for r in range(4):
      for c in range(5):
        if mask[b, r, c]:
          p = np.array([-1 + (2 * c + 1) / 5, -1 + (2 * r + 1) / 4])
          total += min(np.sum((p - k) ** 2) for k in keypoints[b].astype(np.float64))
          count += 1
    expected.append(total / count if count else 0.0)
  np.testing.assert_allclose(objective.foreground_loss(jnp.asarray(keypoints),
                                                       jnp.asarray(mask)),
                             np.mean(expected), rtol=1e-5)


def test_foreground_loss_gradient_pulls_each_keypoint_to_its_pixels_mean():
  # One keypoint owns all pixels: d/dk mean ||p - k||^2 = 2 (k - mean p).
  mask = np.zeros((1, 8, 8), np.float32)
  mask[0, 1:3, 5:8] = 1.0
  keypoints = jnp.asarray([[[-0.9, 0.9], [5.0, 5.0]]])
  grad = jax.grad(lambda k: objective.foreground_loss(k, jnp.asarray(mask)))(keypoints)
  rows, cols = np.nonzero(mask[0])
  centre = np.array([np.mean(-1 + (2 * cols + 1) / 8), np.mean(-1 + (2 * rows + 1) / 8)])
  np.testing.assert_allclose(grad[0, 0], 2 * (np.array([-0.9, 0.9]) - centre), rtol=1e-5)
  np.testing.assert_array_equal(grad[0, 1], 0.0)


@pytest.mark.slow
def test_objective_adds_the_weighted_foreground_term():
  config = tiny_config()
  model = build_model(config)
  image = jnp.asarray(np.random.default_rng(0).uniform(-1, 1, (2, 32, 32, 3)), jnp.float32)
  variables = model.init(jax.random.PRNGKey(0), image, image, train=False)
  outputs = model.apply(variables, image, image, train=False)
  mask = jnp.asarray(np.random.default_rng(1).random((2, 32, 32)) < 0.3, jnp.float32)
  l1 = lambda r, t: (jnp.mean(jnp.abs(r - t)), {})
  base, _ = objective.ppl_objective(outputs, image, config.loss, l1)
  total, metrics = objective.ppl_objective(outputs, image, config.loss, l1, foreground=mask,
                                           foreground_weight=0.25)
  l_fg = objective.foreground_loss(outputs['keypoints'], mask)
  np.testing.assert_allclose(total, base + 0.25 * l_fg, rtol=1e-6)
  np.testing.assert_allclose(metrics['foreground_loss'], l_fg)


def test_on_foreground_loss_against_numpy_and_its_gradient():
  rng = np.random.default_rng(4)
  keypoints = rng.uniform(-1, 1, (3, 4, 2)).astype(np.float32)
  mask = (rng.random((3, 4, 5)) < 0.3).astype(np.float32)
  mask[2] = 0.0   # a frame without foreground adds 0
  expected = np.zeros((3, 4))
  for b in range(2):
    pixels = [np.array([-1 + (2 * c + 1) / 5, -1 + (2 * r + 1) / 4])
              for r in range(4) for c in range(5) if mask[b, r, c]]
    for n in range(4):
      expected[b, n] = min(np.sum((p - keypoints[b, n].astype(np.float64)) ** 2) for p in pixels)
  loss = lambda k: objective.on_foreground_loss(k, jnp.asarray(mask))
  np.testing.assert_allclose(loss(jnp.asarray(keypoints)), expected.mean(), rtol=1e-5)
  # The gradient pulls each keypoint straight to its nearest foreground pixel: 2 (k - p) / (B N).
  grad = np.asarray(jax.grad(loss)(jnp.asarray(keypoints)))
  assert np.all(np.isfinite(grad)) and np.all(grad[2] == 0)
  pixels = [np.array([-1 + (2 * c + 1) / 5, -1 + (2 * r + 1) / 4])
            for r in range(4) for c in range(5) if mask[0, r, c]]
  nearest = min(pixels, key=lambda p: np.sum((p - keypoints[0, 1]) ** 2))
  np.testing.assert_allclose(grad[0, 1], 2 * (keypoints[0, 1] - nearest) / 12, rtol=1e-4)


@pytest.mark.slow
def test_objective_adds_the_on_foreground_term_and_the_pipeline_its_masks():
  config = tiny_config()
  config.loss.foreground_weight = 0.0   # the on-foreground term alone
  config.loss.on_foreground_weight = 0.5
  assert input_pipeline.uses_foreground(config.loss)
  source = synthetic.from_config(config.data, 'train')
  batch = next(iter(input_pipeline.create_train_dataset(config, source, seed=0)))
  assert batch['foreground'].shape == batch['image'].shape[:3]
  model = build_model(config)
  image = jnp.asarray(batch['image'])
  variables = model.init(jax.random.PRNGKey(0), image, image, train=False)
  outputs = model.apply(variables, image, image, train=False)
  mask = jnp.asarray(batch['foreground'])
  l1 = lambda r, t: (jnp.mean(jnp.abs(r - t)), {})
  base, _ = objective.ppl_objective(outputs, image, config.loss, l1, foreground=mask,
                                    foreground_weight=0.0)
  config.loss.on_foreground_weight = 0.0
  without, _ = objective.ppl_objective(outputs, image, config.loss, l1, foreground=mask,
                                       foreground_weight=0.0)
  l_on = objective.on_foreground_loss(outputs['keypoints'], mask)
  assert float(l_on) > 0
  np.testing.assert_allclose(base, without + 0.5 * l_on, rtol=1e-6)
  assert not input_pipeline.uses_foreground(config.loss)


def test_foreground_weight_decays_linearly_to_zero():
  config = tiny_config()
  config.loss.foreground_weight = 2.0
  config.loss.foreground_anneal_steps = 100
  weights = [float(train.foreground_weight(config.loss, jnp.int32(s))) for s in (0, 25, 100, 150)]
  np.testing.assert_allclose(weights, [2.0, 1.5, 0.0, 0.0])
  config.loss.foreground_anneal_steps = 0
  assert float(train.foreground_weight(config.loss, jnp.int32(10 ** 6))) == 2.0


def test_part_coverage_hand_computed():
  # 5 frames, 2 keypoints, 2 joints (units of the image side, radius 0.03).
  gt = np.zeros((5, 2, 2))
  gt[:, 1] = [0.5, 0.5]
  predicted = np.zeros((5, 2, 2))
  predicted[:, 0] = [0.01, 0.0]            # always within 0.03 of joint 0
  predicted[:, 1] = [0.5, 0.5]
  predicted[:2, 1] = [0.6, 0.5]            # near joint 1 on 3 of 5 frames only
  visible = np.ones((5, 2), bool)
  result = discovery.part_coverage(predicted, gt, visible)
  np.testing.assert_array_equal(result.covered, [True, False])
  np.testing.assert_allclose(result.best_fraction, [1.0, 0.6])
  np.testing.assert_array_equal(result.keypoint, [0, 1])
  visible[:2, 1] = False                   # the misses are unlabelled: 3 of 3
  result = discovery.part_coverage(predicted, gt, visible)
  assert result.num_covered == 2
  assert not discovery.part_coverage(predicted, gt, np.zeros((5, 2), bool)).covered.any()


def test_heatmap_reliance_matches_a_model_with_the_links_switched_off():
  config = tiny_config()
  model = build_model(config)
  rng = np.random.default_rng(0)
  image = jnp.asarray(rng.uniform(-1, 1, (2, 32, 32, 3)), jnp.float32)
  reference = image * jnp.asarray(rng.random((2, 32, 32, 1)) < 0.5, jnp.float32)
  variables = model.init(jax.random.PRNGKey(0), image, image, train=False)
  # A decoder that uses S: perturb the first decoder conv's heatmap input channel.
  params = jax.tree_util.tree_map(lambda x: x, variables['params'])
  flat = jax.tree_util.tree_flatten_with_path(params)[0]
  first_kernel = [p for p, x in flat if 'decoder' in jax.tree_util.keystr(p)
                  and x.ndim == 4 and x.shape[2] == 4][0]
  def bump(path, x):
    return x.at[:, :, 3].add(2.0) if path == first_kernel else x
  params = jax.tree_util.tree_map_with_path(bump, params)
  variables = dict(variables, params=params)
  # Reference: the same model with every link weight ~0 (softplus of -1e4) decodes S = 0.
  off = jax.tree_util.tree_map_with_path(
      lambda p, x: jnp.full_like(x, -1e4) if 'connectivity' in jax.tree_util.keystr(p) else x,
      params)

  def l1(v):
    keypoints, _ = model.apply(variables, image, train=False, method=PPL.estimate)
    recon, _ = model.apply(v, reference, keypoints, train=False, method=PPL.render_and_decode)
    return float(jnp.mean(jnp.abs(recon - image)))

  expected = l1(dict(variables, params=off)) / l1(variables) - 1
  got = discovery.heatmap_reliance(model, variables, image, reference)
  np.testing.assert_allclose(got, expected, rtol=1e-5)
  assert abs(got) > 1e-4


def test_provenance_same_code():
  code = provenance.current()
  assert code['packages']['jax'] == jax.__version__
  clean = {'git_commit': 'abc', 'git_dirty': False, 'packages': {'jax': '1'}}
  assert provenance.same_code(clean, dict(clean))
  assert not provenance.same_code(clean, dict(clean, git_commit='def'))
  assert not provenance.same_code(clean, dict(clean, git_dirty=True))
  assert not provenance.same_code(clean, dict(clean, packages={'jax': '2'}))
  assert not provenance.same_code(None, clean)


@pytest.mark.parametrize('dirty', [False, True])
def test_provenance_for_results_warns_on_a_dirty_tree(monkeypatch, capsys, dirty):
  code = {'git_commit': 'abc', 'git_dirty': dirty, 'packages': {}}
  monkeypatch.setattr(provenance, 'current', lambda: code)
  assert provenance.current_for_results('these scores') is code
  out = capsys.readouterr().out
  assert ('WARNING' in out and 'these scores will not be reusable' in out) == dirty


def test_keypoint_attachment_finds_the_bone_point_each_keypoint_follows():
  rng = np.random.default_rng(3)
  frames = 40
  truth = rng.uniform(0.2, 0.8, (frames, 3, 2))          # joints 0-1-2, bones (0,1), (1,2)
  skeleton = [(0, 1), (1, 2)]
  on_bone = truth[:, 1] + 0.25 * (truth[:, 2] - truth[:, 1])       # t = 0.25 on bone 1
  at_joint = truth[:, 0] + 0.004                                   # near joint 0 (bone 0, t 0)
  wandering = rng.uniform(0, 1, (frames, 2))
  predicted = np.stack([on_bone, at_joint, wandering], axis=1)
  visible = np.ones((frames, 3), bool)
  got = discovery.keypoint_attachment(predicted, truth, visible, skeleton)
  assert got.bone[0] == 1 and got.fraction[0] == pytest.approx(0.25)
  assert got.distance[0] == pytest.approx(0.0, abs=1e-12)
  assert got.bone[1] == 0 and got.fraction[1] == 0.0
  assert got.distance[1] == pytest.approx(0.004 * np.sqrt(2), rel=1e-9)
  assert list(got.attached) == [True, True, False] and got.num_attached == 2
  # Brute-force reference for the wandering keypoint: every bone, every t.
  best = min(np.linalg.norm(wandering - (truth[:, a] + t * (truth[:, b] - truth[:, a])),
                            axis=-1).mean()
             for a, b in skeleton for t in np.linspace(0, 1, 21))
  assert got.distance[2] == pytest.approx(best, rel=1e-12)
  # Frames where a bone's joint is unlabelled do not count for that bone.
  visible[:20, 2] = False
  truth_hidden = truth.copy()
  truth_hidden[:20, 2] = 100.0
  hidden = discovery.keypoint_attachment(predicted, truth_hidden, visible, skeleton)
  assert hidden.distance[0] == pytest.approx(0.0, abs=1e-12)


def test_per_video_attachment_counts_identities_held_within_each_video():
  rng = np.random.default_rng(4)
  frames = 30
  truth = rng.uniform(0.2, 0.8, (2 * frames, 3, 2))
  skeleton = [(0, 1), (1, 2)]
  video = np.repeat([0, 1], frames)
  # Keypoint 0 holds joint 0 in video 0 and joint 2 in video 1 (an identity swap);
  # keypoint 1 holds joint 1 in both; keypoint 2 wanders.
  swapped = np.where((video == 0)[:, None], truth[:, 0], truth[:, 2])
  predicted = np.stack([swapped, truth[:, 1], rng.uniform(0, 1, (2 * frames, 2))], axis=1)
  visible = np.ones((2 * frames, 3), bool)
  assert discovery.keypoint_attachment(predicted, truth, visible, skeleton).num_attached == 1
  assert discovery.per_video_attachment(predicted, truth, visible, skeleton, video) == 2.0
