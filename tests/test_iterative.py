"""Iterative inference against a step-by-step loop over the model's methods."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ppl_jax import config as config_lib
from ppl_jax.evaluation import iterative
from ppl_jax.evaluation import memory_diagnostics
from ppl_jax.evaluation import occlusion
from ppl_jax.models import build_model


def _tiny_model_and_variables():
  """A tiny PPL and random variables of its structure.

  The variables are drawn on the host from the shapes of `jax.eval_shape(init)`:
  compiling `model.init` costs about a minute on a loaded 2-core CPU, and the test
  needs only some fixed, non-degenerate values.
  """
  config = config_lib.default_config()
  config_lib.make_tiny(config)
  config.model.num_parts = 4
  model = build_model(config)
  image = jnp.zeros((2, 32, 32, 3))
  shapes = jax.eval_shape(lambda key: model.init(key, image, image, train=False),
                          jax.random.key(0))
  rng = np.random.default_rng(0)

  def fill(path, leaf):
    name = path[-1].key
    if name in ('mean', 'bias'):
      return jnp.asarray(0.1 * rng.normal(size=leaf.shape), leaf.dtype)
    if name in ('var', 'scale', 'ema_count', 'alpha'):
      return jnp.asarray(1.0 + 0.1 * rng.uniform(size=leaf.shape), leaf.dtype)
    fan_in = int(np.prod(leaf.shape[:-1])) if len(leaf.shape) > 1 else 1
    return jnp.asarray(rng.normal(size=leaf.shape) / np.sqrt(fan_in), leaf.dtype)

  return model, jax.tree_util.tree_map_with_path(fill, shapes)


def _model_steps(model, variables):
  """The jitted (estimate, recall, render_and_decode) an iteration is made of."""
  estimate = jax.jit(lambda x: model.apply(variables, x, train=False, method=model.estimate))
  recall = jax.jit(lambda k: model.apply(variables, k, method=model.recall))
  decode = jax.jit(lambda ref, k: model.apply(variables, ref, k, train=False,
                                              method=model.render_and_decode))
  return estimate, recall, decode


@pytest.fixture(scope='module')
def tiny():
  return _tiny_model_and_variables()


def test_iterations_follow_the_paper(tiny):
  model, variables = tiny
  image = jnp.asarray(np.random.default_rng(1).uniform(-1, 1, (2, 32, 32, 3)), jnp.float32)
  outputs = iterative.make_iterative_inference(model)(variables, image)
  assert outputs['keypoints'].shape == (4, 2, 4, 2)
  assert outputs['keypoints_recon'].shape == (4, 2, 4, 2)
  assert outputs['recon'].shape == (4, 2, 32, 32, 3)
  assert outputs['heatmap'].shape == (4, 2, 32, 32)

  estimate, recall, decode = _model_steps(model, variables)
  current = image
  for t in range(4):
    keypoints, _ = estimate(current)
    keypoints_recon = recall(keypoints)
    recon, heatmap = decode(image, keypoints_recon)   # reference: the original frame
    np.testing.assert_allclose(outputs['keypoints'][t], keypoints, atol=1e-4)
    np.testing.assert_allclose(outputs['keypoints_recon'][t], keypoints_recon, atol=1e-4)
    np.testing.assert_allclose(outputs['recon'][t], recon, atol=1e-4)
    np.testing.assert_allclose(outputs['heatmap'][t], heatmap, atol=1e-4)
    if t == 1:
      # Decoding with the previous reconstruction as reference would differ.
      wrong, _ = decode(current, keypoints_recon)
      assert np.abs(np.asarray(wrong) - np.asarray(recon)).max() > 1e-3
    current = recon
  # The iterations change the input, so later keypoints differ from iteration 0's.
  assert np.abs(outputs['keypoints'][1] - outputs['keypoints'][0]).max() > 1e-6


def test_identity_recall_decodes_the_estimate_itself(tiny):
  model, variables = tiny
  image = jnp.asarray(np.random.default_rng(2).uniform(-1, 1, (2, 32, 32, 3)), jnp.float32)
  outputs = iterative.make_iterative_inference(model, num_iterations=3, recall=False)(
      variables, image)
  estimate, recall, decode = _model_steps(model, variables)
  current = image
  for t in range(3):
    keypoints, _ = estimate(current)
    recon, heatmap = decode(image, keypoints)
    np.testing.assert_allclose(outputs['keypoints'][t], keypoints, atol=1e-4)
    np.testing.assert_array_equal(outputs['keypoints_recon'][t], outputs['keypoints'][t])
    np.testing.assert_allclose(outputs['recon'][t], recon, atol=1e-4)
    np.testing.assert_allclose(outputs['heatmap'][t], heatmap, atol=1e-4)
    current = recon
  # The memory's recall would have moved them.
  assert np.abs(np.asarray(recall(outputs['keypoints'][0])) - outputs['keypoints'][0]).max() > 1e-3


def test_composite_input_replaces_only_the_occluded_pixels(tiny):
  model, variables = tiny
  rng = np.random.default_rng(3)
  image = jnp.asarray(rng.uniform(-1, 1, (2, 32, 32, 3)), jnp.float32)
  occluded = np.zeros((2, 32, 32), bool)
  occluded[0, 4:20, 8:24] = True
  occluded[1, ::3] = True
  outputs = iterative.make_iterative_inference(model, num_iterations=3,
                                               next_input='composite')(
                                                   variables, image, None, occluded)
  estimate, recall, decode = _model_steps(model, variables)
  current = np.asarray(image)
  for t in range(3):
    keypoints, _ = estimate(current)
    recon, _ = decode(image, recall(keypoints))
    np.testing.assert_allclose(outputs['keypoints'][t], keypoints, atol=1e-4)
    np.testing.assert_allclose(outputs['recon'][t], recon, atol=1e-4)
    current = np.where(occluded[..., None], np.asarray(recon), np.asarray(image))
    np.testing.assert_allclose(outputs['next_input'][t], current, atol=1e-4)
  np.testing.assert_array_equal(np.asarray(outputs['next_input'])[:, ~occluded],
                                np.broadcast_to(np.asarray(image)[~occluded],
                                                (3,) + np.asarray(image)[~occluded].shape))
  # The paper's loop feeds the whole reconstruction instead.
  paper = iterative.make_iterative_inference(model, num_iterations=3)(variables, image)
  np.testing.assert_allclose(paper['next_input'], paper['recon'])
  assert np.abs(np.asarray(paper['keypoints'][2] - outputs['keypoints'][2])).max() > 1e-4


def test_composite_input_on_an_unoccluded_frame_is_the_single_pass(tiny):
  model, variables = tiny
  image = jnp.asarray(np.random.default_rng(4).uniform(-1, 1, (2, 32, 32, 3)), jnp.float32)
  outputs = iterative.make_iterative_inference(model, num_iterations=3,
                                               next_input='composite')(
                                                   variables, image, None,
                                                   np.zeros((2, 32, 32), bool))
  single, _ = _model_steps(model, variables)[0](image)
  for t in range(3):
    np.testing.assert_allclose(outputs['keypoints'][t], single, atol=1e-5)
  with pytest.raises(ValueError, match='occluded'):
    iterative.make_iterative_inference(model, next_input='composite')(variables, image)
  with pytest.raises(ValueError, match='next_input'):
    iterative.make_iterative_inference(model, next_input='whole')


def test_codebook_usage_hand_computed():
  indices = np.array([[0, 1], [0, 1], [1, 1], [2, 1]])
  usage = memory_diagnostics.codebook_usage(indices, num_tokens=4)
  # Bank 0: frequencies 1/2, 1/4, 1/4, 0 -> 3 of 4 tokens, perplexity 2^1.5; bank 1: one token.
  np.testing.assert_allclose(usage['used_fraction'], [0.75, 0.25])
  np.testing.assert_allclose(usage['perplexity'], [2 ** 1.5, 1.0])


def test_occlusion_sweep_hand_computed():
  ground_truth = np.array([[[0.0, 0.0], [0.5, 0.5]]])        # one frame, two joints
  offsets = np.array([0.0, 0.1, 0.2])                        # per iteration, in x

  def infer(variables, images, reference_keep, occluded):
    del variables, occluded
    assert reference_keep is None
    # Two detected keypoints at the joints (swapped order), shifted by the offset of the
    # iteration, plus the fraction of masked (zero) pixels so maskings differ.
    masked = float((np.asarray(images) == 0).all(axis=-1).mean())
    base = ground_truth[:, ::-1]
    keypoints = base[None] + (offsets + masked)[:, None, None, None] * np.array([1.0, 0.0])
    return {'keypoints': keypoints}

  batch = {'image': np.ones((1, 32, 32, 3), np.float32), 'keypoints': ground_truth,
           'visible': np.array([[True, True]]), 'valid': np.array([True])}
  results = iterative.occlusion_sweep(
      infer, None, [batch], [occlusion.CenterMasking(0), occlusion.CenterMasking(16)],
      assignment=np.array([1, 0]))
  clean, centre = results['center_0'], results['center_16']
  assert clean.protocol == iterative.FIXED_MATCHING_PROTOCOL
  # Every joint is off by the x offset: L2 = offset, in [-1, 1] units -> x 50.
  np.testing.assert_allclose(clean.details['per_iteration'], [0.0, 5.0, 10.0], atol=1e-9)
  np.testing.assert_allclose(centre.details['per_iteration'], [12.5, 17.5, 22.5], atol=1e-9)
  assert clean.value == pytest.approx(10.0)


def test_occlusion_sweep_passes_the_reference_mask_of_each_batch():
  ground_truth = np.zeros((2, 1, 2))
  seen = []

  def infer(variables, images, reference_keep, occluded):
    del variables, occluded
    seen.append(reference_keep)
    # Keypoints off by the kept fraction of the reference, so the mask shows in the error.
    return {'keypoints': np.full((1,) + images.shape[:1] + (1, 2), 0.0)
                         + np.array([reference_keep.mean(), 0.0])}

  batches = [{'image': np.ones((2, 32, 32, 3), np.float32), 'keypoints': ground_truth,
              'visible': np.ones((2, 1), bool)}] * 2
  keeps = {0: np.full((2, 32, 32), 0.25), 1: np.full((2, 32, 32), 0.75)}
  results = iterative.occlusion_sweep(
      infer, None, batches, [occlusion.CenterMasking(0)], assignment=np.array([0]),
      reference_keep=lambda index, size: keeps[index][:size])
  assert [k.mean() for k in seen] == [0.25, 0.75]
  # Mean over 4 frames of 0.25 and 0.75 -> 0.5 in [-1, 1] units -> x 50.
  np.testing.assert_allclose(results['center_0'].details['per_iteration'], [25.0])


def test_masked_reference_is_the_frame_under_the_keep_mask(tiny):
  model, variables = tiny
  rng = np.random.default_rng(2)
  image = jnp.asarray(rng.uniform(-1, 1, (2, 32, 32, 3)), jnp.float32)
  keep = jnp.asarray(rng.uniform(size=(2, 32, 32)) < 0.2, jnp.float32)
  outputs = iterative.make_iterative_inference(model, num_iterations=2)(variables, image, keep)
  estimate, recall, decode = _model_steps(model, variables)
  current = image
  for t in range(2):
    keypoints_recon = recall(estimate(current)[0])
    recon, _ = decode(np.asarray(image) * np.asarray(keep)[..., None], keypoints_recon)
    np.testing.assert_allclose(outputs['recon'][t], recon, atol=1e-4)
    current = recon
  unmasked = iterative.make_iterative_inference(model, num_iterations=1)(variables, image)
  assert np.abs(np.asarray(unmasked['recon'][0] - outputs['recon'][0])).max() > 1e-3
