"""Random similarity warps of images and the matching map of keypoints (equivariance loss).

A warp is (A [B, 2, 2], t [B, 2]) in [-1, 1] (x, y) units: the warped image at point q shows
the input at A q + t, so a point p of the input appears at A^-1 (p - t) in the warped image.
"""

import jax
import jax.numpy as jnp

from ppl_jax.ops.grid import pixel_grid


def random_similarity(rng, batch: int, *, max_degrees: float, max_log_scale: float,
                      max_shift: float, flip_prob: float = 0.0):
  """(A [B, 2, 2], t [B, 2]): rotation uniform in +-max_degrees, scale exp(uniform
  +-max_log_scale), shift uniform in +-max_shift ([-1, 1] units) per axis; with probability
  flip_prob a warp also mirrors x (A = R s diag(-1, 1): the warped image is the rotated,
  scaled and shifted one, mirrored left-right)."""
  angle_rng, scale_rng, shift_rng = jax.random.split(rng, 3)
  angle = jnp.deg2rad(max_degrees) * jax.random.uniform(angle_rng, (batch,), minval=-1, maxval=1)
  scale = jnp.exp(max_log_scale * jax.random.uniform(scale_rng, (batch,), minval=-1, maxval=1))
  cos, sin = scale * jnp.cos(angle), scale * jnp.sin(angle)
  matrix = jnp.stack([jnp.stack([cos, -sin], -1), jnp.stack([sin, cos], -1)], -2)
  shift = max_shift * jax.random.uniform(shift_rng, (batch, 2), minval=-1, maxval=1)
  if flip_prob:   # a key of its own: without flips the draws above are unchanged
    flipped = jax.random.uniform(jax.random.fold_in(rng, 3), (batch,)) < flip_prob
    column_sign = jnp.stack([jnp.where(flipped, -1.0, 1.0), jnp.ones(batch)], -1)   # [B, 2]
    matrix = matrix * column_sign[:, None, :]   # A diag(-1, 1): x's column negated
  return matrix, shift


def invert_some(rng, images, prob: float):
  """images [B, H, W, C] in [-1, 1] with each one contrast-inverted (-x) with probability
  `prob`; returns (images, inverted bool [B])."""
  inverted = jax.random.uniform(rng, images.shape[:1]) < prob
  return jnp.where(inverted[:, None, None, None], -images, images), inverted


def warp_images(images, matrix, shift):
  """images [B, H, W, C] -> warped [B, H, W, C]: bilinear, edges extended."""
  b, h, w, c = images.shape
  grid = pixel_grid(h, w)                                             # [H*W, 2] (x, y)
  source = jnp.einsum('bij,pj->bpi', matrix, grid) + shift[:, None]   # [B, H*W, 2]
  # [-1, 1] -> fractional pixel indices (pixel centres at integers).
  cols = (source[..., 0] + 1) * w / 2 - 0.5
  rows = (source[..., 1] + 1) * h / 2 - 0.5

  def sample(image, r, q):   # [H, W, C], [H*W] x2 -> [H*W, C]
    return jax.vmap(lambda channel: jax.scipy.ndimage.map_coordinates(
        channel, [r, q], order=1, mode='nearest'), in_axes=-1, out_axes=-1)(image)

  return jax.vmap(sample)(images, rows, cols).reshape(b, h, w, c)


def warp_points(points, matrix, shift):
  """Where input points [B, N, 2] appear in the warped image: A^-1 (p - t)."""
  return jnp.einsum('bij,bnj->bni', jnp.linalg.inv(matrix), points - shift[:, None])
