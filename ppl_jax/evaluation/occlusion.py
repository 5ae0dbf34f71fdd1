"""Occlusion protocols of the paper (sec. 4.3, Figs. 6-7; SPEC 3).

The image is split into a 32 x 32 grid of equal patches (1024 patches; any H, W
divisible by 32). RandomMasking masks a fraction of the patches chosen uniformly
without replacement (exactly round(ratio * 1024) patches, a fresh draw per image
from a seeded generator); CenterMasking masks a centred s x s square of patches
(for odd 32 - s the extra patch row/column falls after the square). Masked pixels
are set to `fill`, 0 by default: mid-grey for images in [-1, 1], the same value
AutoLink's masked-self context writes into its masked blocks.

Masks are numpy (built on the host, like the evaluation batches); `mask_images`
works on numpy images [B, H, W, C].
"""

import dataclasses
from typing import Optional, Tuple, Union

import numpy as np

GRID = 32                                     # patches per side (32 x 32 = 1024)
PAPER_MASK_RATIOS = (0.1, 0.2, 0.3, 0.4)      # RandomMasking, Fig. 6
PAPER_MASK_SIZES = (4, 6, 8, 10, 12)          # CenterMasking, Fig. 7 (patches per side)


def patch_size(height: int, width: int, grid: int = GRID) -> Tuple[int, int]:
  """(patch height, patch width) in pixels; raises unless H and W are divisible by grid."""
  if height % grid or width % grid:
    raise ValueError(
        f'Occlusion masks split the image into {grid} x {grid} patches, so its height and '
        f'width must be divisible by {grid}; got {height} x {width} (set '
        f'config.data.image_size to a multiple of {grid}).')
  return height // grid, width // grid


def random_patch_masks(rng: Union[np.random.Generator, int], ratio: float, batch: int,
                       grid: int = GRID) -> np.ndarray:
  """bool [batch, grid, grid], True = masked; round(ratio * grid^2) patches per image."""
  if not 0.0 <= ratio <= 1.0:
    raise ValueError(f'RandomMasking ratio must be in [0, 1], got {ratio}.')
  rng = np.random.default_rng(rng)
  count = int(round(ratio * grid * grid))
  masks = np.zeros((batch, grid * grid), bool)
  for mask in masks:
    mask[rng.choice(grid * grid, size=count, replace=False)] = True
  return masks.reshape(batch, grid, grid)


def center_patch_mask(size: int, grid: int = GRID) -> np.ndarray:
  """bool [grid, grid], True on the centred size x size square of patches."""
  if not 0 <= size <= grid:
    raise ValueError(f'CenterMasking size must be in [0, {grid}] patches, got {size}.')
  start = (grid - size) // 2
  mask = np.zeros((grid, grid), bool)
  mask[start:start + size, start:start + size] = True
  return mask


def pixel_masks(patch_masks: np.ndarray, height: int, width: int) -> np.ndarray:
  """bool [1 or B, H, W], True = masked, from patch masks [grid, grid] or [B, grid, grid]."""
  patch_masks = np.asarray(patch_masks, bool)
  grid = patch_masks.shape[-1]
  if patch_masks.shape[-2] != grid or patch_masks.ndim not in (2, 3):
    raise ValueError(f'patch masks must be [grid, grid] or [B, grid, grid], got '
                     f'{patch_masks.shape}.')
  rows, cols = patch_size(height, width, grid)
  masks = np.repeat(np.repeat(patch_masks, rows, axis=-2), cols, axis=-1)
  return masks[None] if masks.ndim == 2 else masks


def mask_images(images: np.ndarray, patch_masks: np.ndarray, fill: float = 0.0) -> np.ndarray:
  """Images [B, H, W, C] with the masked patches set to `fill`.

  patch_masks: bool [grid, grid] (same for every image) or [B, grid, grid].
  """
  images = np.asarray(images)
  if images.ndim != 4:
    raise ValueError(f'mask_images needs images [B, H, W, C], got {images.shape}.')
  masks = pixel_masks(patch_masks, images.shape[1], images.shape[2])
  return np.where(masks[..., None], np.asarray(fill, images.dtype), images)


def _fill(images: np.ndarray, occluded: np.ndarray, fill: float) -> np.ndarray:
  """Images [B, H, W, C] with the pixels of `occluded` [B, H, W] set to `fill`."""
  images = np.asarray(images)
  return np.where(occluded[..., None], np.asarray(fill, images.dtype), images)


@dataclasses.dataclass(frozen=True)
class RandomMasking:
  """Masks a fraction `ratio` of the 1024 patches; batch k of a run uses seed (seed, k)."""
  ratio: float
  seed: int = 0
  fill: float = 0.0

  def patch_masks(self, batch: int, batch_index: int = 0) -> np.ndarray:
    """bool [batch, 32, 32], True = masked."""
    return random_patch_masks(np.random.default_rng((self.seed, batch_index)), self.ratio,
                              batch)

  def occluded(self, images: np.ndarray, batch_index: int = 0) -> np.ndarray:
    """bool [B, H, W]: the pixels `__call__` masks in `images` [B, H, W, C]."""
    images = np.asarray(images)
    return pixel_masks(self.patch_masks(len(images), batch_index), *images.shape[1:3])

  def __call__(self, images: np.ndarray, batch_index: int = 0) -> np.ndarray:
    return _fill(images, self.occluded(images, batch_index), self.fill)

  @property
  def name(self) -> str:
    return f'random_{self.ratio:g}'


@dataclasses.dataclass(frozen=True)
class CenterMasking:
  """Masks the centred size x size square of the 32 x 32 patches."""
  size: int
  fill: float = 0.0

  def occluded(self, images: np.ndarray, batch_index: Optional[int] = None) -> np.ndarray:
    """bool [B, H, W]: the pixels `__call__` masks in `images` [B, H, W, C]."""
    del batch_index  # the same mask for every batch
    images = np.asarray(images)
    masks = pixel_masks(center_patch_mask(self.size), *images.shape[1:3])
    return np.broadcast_to(masks, images.shape[:3])

  def __call__(self, images: np.ndarray, batch_index: Optional[int] = None) -> np.ndarray:
    return _fill(images, self.occluded(images, batch_index), self.fill)

  @property
  def name(self) -> str:
    return f'center_{self.size}'
