"""Pixel-space reconstruction losses for images in [-1, 1].

All losses take `recon`, `target` float [B, H, W, C] (NHWC, values in [-1, 1])
and return a float32 scalar averaged over the batch.

- `l1_loss`: mean |recon - target| (in [-1, 1] units).
- `mse_loss`: mean (recon - target)^2.
- `ssim_loss`: 1 - SSIM (Wang et al. 2004): 11 x 11 Gaussian window, sigma 1.5,
  C1 = (0.01 L)^2, C2 = (0.03 L)^2, 'valid' windows only (no padding, as in the
  original paper's code and `tf.image.ssim`), SSIM averaged over positions,
  channels and the batch. It is computed on the images mapped to [0, 1] with
  L = 1, which equals SSIM on [0, 2] with L = 2 (SSIM is invariant to a common
  scaling of images and L). Not on [-1, 1] directly: the luminance term
  (2 mu_x mu_y + C1) / (mu_x^2 + mu_y^2 + C1) is not shift invariant and
  assumes non-negative intensities.
- `l1_ssim_loss`: alpha (1 - SSIM) / 2 + (1 - alpha) L1 with alpha = 0.85 and
  both terms as on [0, 1] images (L1 here is half the [-1, 1] L1): the mix of
  Godard et al. 2017 (Monodepth) and Zhao et al. 2017 ("Loss functions for
  image restoration with neural networks", alpha 0.84), written with the
  standard 11 x 11 SSIM window.

SSIM is written here by hand because the JAX library that has it (dm_pix) is
not a dependency of ppl_jax.
"""

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_K1 = 0.01
SSIM_K2 = 0.03
L1_SSIM_ALPHA = 0.85


def l1_loss(recon: jax.Array, target: jax.Array) -> jax.Array:
  """Mean absolute error over all elements; [B, H, W, C] x2 -> scalar."""
  diff = recon.astype(jnp.float32) - target.astype(jnp.float32)
  return jnp.mean(jnp.abs(diff))


def mse_loss(recon: jax.Array, target: jax.Array) -> jax.Array:
  """Mean squared error over all elements; [B, H, W, C] x2 -> scalar."""
  diff = recon.astype(jnp.float32) - target.astype(jnp.float32)
  return jnp.mean(jnp.square(diff))


def gaussian_window(size: int = SSIM_WINDOW,
                    sigma: float = SSIM_SIGMA) -> np.ndarray:
  """Normalised 1-D Gaussian taps [size]; the 2-D window is their outer."""
  offsets = np.arange(size, dtype=np.float64) - (size - 1) / 2
  taps = np.exp(-offsets**2 / (2 * sigma**2))
  return taps / taps.sum()


def _band_matrix(n: int, taps: np.ndarray) -> np.ndarray:
  """[n - k + 1, n] matrix whose row i holds `taps` at columns i..i+k-1."""
  k = len(taps)
  rows = np.arange(n - k + 1)[:, None]
  band = np.zeros((n - k + 1, n), np.float32)
  band[rows, rows + np.arange(k)] = taps
  return band


def _filter_valid(x: jax.Array, taps: np.ndarray) -> jax.Array:
  """Separable 'valid' filter per channel; [B,H,W,C] -> [B,H-k+1,W-k+1,C].

  Written as two matmuls with banded matrices rather than as a depthwise
  convolution: XLA:CPU runs grouped convolutions ~30x slower than these dots
  (forward + backward at 16 x 64 x 64 x 15: 124 ms vs 3.4 ms), and the SSIM
  was a third of the synthetic default's training step.
  """
  rows = jnp.asarray(_band_matrix(x.shape[1], taps))
  cols = jnp.asarray(_band_matrix(x.shape[2], taps))
  # HIGHEST: accelerators otherwise may run f32 matmuls in bf16 passes, and
  # SSIM's variance terms (E[x^2] - E[x]^2) cancel badly at low precision.
  highest = jax.lax.Precision.HIGHEST
  x = jnp.einsum('ih,bhwc->biwc', rows, x, precision=highest)
  return jnp.einsum('jw,biwc->bijc', cols, x, precision=highest)


def ssim(recon: jax.Array, target: jax.Array, *, data_range: float = 1.0,
         window: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA) -> jax.Array:
  """Mean SSIM per image: [B, H, W, C] x2 -> [B] (1 for identical images).

  Images have intensities in [0, data_range]; H and W must be >= `window`.
  """
  if recon.shape != target.shape or recon.ndim != 4:
    raise ValueError(
        f'ssim expects two [B, H, W, C] arrays of the same shape, got '
        f'{recon.shape} and {target.shape}.')
  if min(recon.shape[1:3]) < window:
    raise ValueError(
        f'ssim needs images of at least {window} x {window} pixels (the '
        f'Gaussian window), got {recon.shape[1:3]}.')
  x = recon.astype(jnp.float32)
  y = target.astype(jnp.float32)
  # One filtering pass for all five local moments.
  stacked = jnp.concatenate([x, y, x * x, y * y, x * y], axis=-1)
  moments = _filter_valid(stacked, gaussian_window(window, sigma))
  mu_x, mu_y, e_xx, e_yy, e_xy = jnp.split(moments, 5, axis=-1)
  var_x = e_xx - mu_x**2
  var_y = e_yy - mu_y**2
  cov = e_xy - mu_x * mu_y
  c1 = (SSIM_K1 * data_range)**2
  c2 = (SSIM_K2 * data_range)**2
  ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / (
      (mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
  return jnp.mean(ssim_map, axis=(1, 2, 3))


def ssim_loss(recon: jax.Array, target: jax.Array) -> jax.Array:
  """1 - mean SSIM of [-1, 1] images (mapped to [0, 1]); 0 when identical."""
  return 1.0 - jnp.mean(ssim((recon + 1) / 2, (target + 1) / 2))


def l1_ssim_loss(recon: jax.Array, target: jax.Array, *,
                 alpha: float = L1_SSIM_ALPHA) -> jax.Array:
  """alpha (1 - SSIM) / 2 + (1 - alpha) L1, both as on [0, 1] images; scalar."""
  return (alpha * ssim_loss(recon, target) / 2
          + (1 - alpha) * l1_loss(recon, target) / 2)


PIXEL_LOSSES: dict[str, Callable[[jax.Array, jax.Array], jax.Array]] = {
    'l1': l1_loss,
    'mse': mse_loss,
    'ssim': ssim_loss,
    'l1_ssim': l1_ssim_loss,
}
