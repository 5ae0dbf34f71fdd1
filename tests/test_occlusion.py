"""Occlusion masks against hand-computed patch layouts and a per-pixel loop."""

import numpy as np
import pytest

from ppl_jax.evaluation import occlusion


def _per_pixel_reference(images, patch_masks, fill):
  """Loop over pixels: pixel (r, c) is in patch (r // ph, c // pw)."""
  out = images.copy()
  batch, height, width, _ = images.shape
  ph, pw = height // 32, width // 32
  for b in range(batch):
    mask = patch_masks if patch_masks.ndim == 2 else patch_masks[b]
    for r in range(height):
      for c in range(width):
        if mask[r // ph, c // pw]:
          out[b, r, c] = fill
  return out


def test_center_mask_hand_computed():
  mask = occlusion.center_patch_mask(4)
  rows, cols = np.nonzero(mask)
  assert mask.shape == (32, 32) and mask.sum() == 16
  assert set(rows) == {14, 15, 16, 17} and set(cols) == {14, 15, 16, 17}
  images = np.ones((1, 64, 96, 3), np.float32)       # patches of 2 x 3 pixels
  masked = occlusion.CenterMasking(4)(images)
  # Patch rows 14-17 -> pixel rows 28-35; patch cols 14-17 -> pixel cols 42-53.
  expected = np.ones_like(images)
  expected[:, 28:36, 42:54] = 0.0
  np.testing.assert_array_equal(masked, expected)
  assert occlusion.center_patch_mask(5)[13:18, 13:18].all()
  assert occlusion.center_patch_mask(5).sum() == 25


def test_random_masks_count_seed_and_layout():
  masks = occlusion.random_patch_masks(0, 0.3, batch=3)
  assert masks.shape == (3, 32, 32)
  assert (masks.reshape(3, -1).sum(axis=1) == round(0.3 * 1024)).all()
  assert not np.array_equal(masks[0], masks[1])     # a fresh draw per image
  np.testing.assert_array_equal(masks, occlusion.random_patch_masks(0, 0.3, batch=3))
  assert not np.array_equal(masks, occlusion.random_patch_masks(1, 0.3, batch=3))
  rng = np.random.default_rng(5)
  images = rng.uniform(-1, 1, (3, 64, 32, 3)).astype(np.float32)
  np.testing.assert_array_equal(occlusion.mask_images(images, masks, fill=0.5),
                                _per_pixel_reference(images, masks, 0.5))


def test_random_masking_is_deterministic_per_batch():
  images = np.ones((2, 32, 32, 3), np.float32)
  masking = occlusion.RandomMasking(0.1, seed=7)
  first = masking(images, batch_index=0)
  np.testing.assert_array_equal(first, masking(images, batch_index=0))
  assert not np.array_equal(first, masking(images, batch_index=1))
  assert (first == 0).all(axis=-1).sum(axis=(1, 2)).tolist() == [102, 102]
  assert masking.name == 'random_0.1'


def test_bad_inputs_raise():
  with pytest.raises(ValueError, match='divisible by 32'):
    occlusion.CenterMasking(4)(np.zeros((1, 48, 40, 3)))
  with pytest.raises(ValueError, match='ratio'):
    occlusion.random_patch_masks(0, 1.5, batch=1)
  with pytest.raises(ValueError, match='size'):
    occlusion.center_patch_mask(40)


def test_occluded_pixels_are_the_ones_each_masking_fills():
  images = np.random.default_rng(6).uniform(0.5, 1, (2, 64, 96, 3)).astype(np.float32)
  centre = occlusion.CenterMasking(4).occluded(images)
  expected = np.zeros((2, 64, 96), bool)
  expected[:, 28:36, 42:54] = True               # as in test_center_mask_hand_computed
  np.testing.assert_array_equal(centre, expected)
  masking = occlusion.RandomMasking(0.3, seed=3)
  occluded = masking.occluded(images, batch_index=2)
  reference = _per_pixel_reference(np.zeros((2, 64, 96, 1), np.float32),
                                   occlusion.random_patch_masks((3, 2), 0.3, 2), 1.0)
  np.testing.assert_array_equal(occluded, reference[..., 0] == 1.0)
  masked = masking(images, batch_index=2)
  np.testing.assert_array_equal(occluded, (masked == 0).all(axis=-1))
  assert occluded.sum() == 2 * round(0.3 * 1024) * 2 * 3     # patches of 2 x 3 pixels
