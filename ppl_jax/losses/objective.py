"""The PPL training objective (paper sec. 3.4; SPEC section 2).

  loss = L_ir + boundary_weight * L_b + link_weight * L_l
         + keypoint_recon_weight * MSE(T'_recon, sg(T')) + commitment_weight * MSE(G, sg(G'))

L_ir   image reconstruction, from the `image_loss(recon, target) -> (scalar, metrics)` callable.
L_b    boundary (eq. 5): sum over the N x 2 coordinates of T' with |c| > 1 of |c|; batch mean.
L_l    link regularisation (eq. 5): sum over ordered pairs (i, j) of
       w_ij |l(T_i, T_j) - l(T'_i, T'_j)|, l = Euclidean distance; batch mean. W has a zero
       diagonal, so this is twice the sum over links i < j. Gradient reaches W, T' and (for an
       explicit trainable prior) T.
L_kr   keypoint-configuration reconstruction, in the release's form (not the paper's unsquared
       norms): mean squared error over all B x N x 2 coordinates between T'_recon and sg(T'),
       plus the VQ commitment MSE over all B x m x d entries between G and sg(G').
L_fg   foreground assignment (ours, weight 0 in the paper's method): mean over the foreground
       pixels p of a frame of min_i ||p - T'_i||^2, batch mean. Each keypoint is pulled to the
       mean of the foreground pixels nearest to it (one k-means step on the moving figure), a
       gradient that reaches a limb however far it is from every keypoint and link, where the
       image loss's reaches only limbs a link already overlaps.
L_on   keypoints on the foreground (ours, weight 0 in the paper's method): mean over the
       keypoints of min over the foreground pixels p of ||T'_i - p||^2, batch mean. The other
       half of L_fg's chamfer distance: L_fg moves only keypoints that are some foreground
       pixel's nearest (a k-means cluster that loses every pixel stays dead, e.g. a keypoint in
       the background); L_on pulls every keypoint onto the figure and is 0 anywhere on it, so it
       can stay on for the whole run without pulling keypoints off the joints.
L_sep  keypoint separation (ours, weight 0 in the paper's method; B-KinD has a similar
       term): sum over pairs i < j of max(0, margin - ||T'_i - T'_j||)^2, batch mean. Two
       keypoints on one part push each other apart, so one is free for an uncovered part.
L_spr  link springs (ours, weight 0 in the paper's method): sum over ordered pairs (i, j) of
       w_ij ||T'_i - T'_j||^2, batch mean; gradient into W and T'. A squared length makes a
       chain of short links cheaper than one long link over the same span ((a + b)^2 >
       a^2 + b^2), so a straight head-pelvis link over the neck, or shoulder-wrist over a bent
       elbow, costs more than the same span with a keypoint at the joint between.
L_eq   equivariance (ours, weight 0 in the paper's method; Thewlis et al. 2017, B-KinD's
       rotation term): mean squared error over B x N x 2 between the keypoints of a randomly
       rotated, scaled and shifted copy of I and the same warp applied to T' (computed in
       `train.py`, which runs the encoder on the warped copy). A keypoint must follow the
       image content it sits on, so it cannot mean one part in one frame and another in the next.
"""

from collections.abc import Callable, Mapping

import jax
import jax.numpy as jnp
import ml_collections

from ppl_jax import ops


def boundary_loss(keypoints):
  """L_b: sum of |c| over coordinates c of keypoints [B, N, 2] with |c| > 1, mean over B."""
  mag = jnp.abs(keypoints.astype(jnp.float32))
  return jnp.mean(jnp.sum(jnp.where(mag > 1.0, mag, 0.0), axis=(1, 2)))


def _pair_distances(points):
  """Euclidean distances [..., N, N] between points [..., N, 2], with a zero gradient at d = 0."""
  diff = points[..., :, None, :] - points[..., None, :, :]
  d2 = jnp.sum(diff ** 2, axis=-1)
  positive = d2 > 0
  # Double where: sqrt'(0) is infinite, and 0 * inf would put NaN into the gradient.
  return jnp.where(positive, jnp.sqrt(jnp.where(positive, d2, 1.0)), 0.0)


def link_loss(prior, keypoints, connectivity):
  """L_l: sum_ij w_ij |l(T_i, T_j) - l(T'_i, T'_j)|, mean over B.

  Args:
    prior: T [N, 2].
    keypoints: T' [B, N, 2].
    connectivity: W [N, N] (zero diagonal).
  """
  before = _pair_distances(prior.astype(jnp.float32))[None]
  after = _pair_distances(keypoints.astype(jnp.float32))
  return jnp.mean(jnp.sum(connectivity * jnp.abs(before - after), axis=(1, 2)))


def _pixel_keypoint_d2(keypoints, size):
  """Squared distances [B, H*W, N] from the pixel centres of an H x W = `size` grid to the
  keypoints [B, N, 2] ([-1, 1] units)."""
  grid = ops.pixel_grid(*size)
  return jnp.sum((grid[None, :, None] - keypoints.astype(jnp.float32)[:, None]) ** 2, -1)


def foreground_loss(keypoints, foreground):
  """L_fg for keypoints T' [B, N, 2] and a foreground mask [B, H, W] in {0, 1}; scalar.

  Pixel centres are on the half-pixel [-1, 1] grid; a frame without foreground adds 0.
  """
  d2 = _pixel_keypoint_d2(keypoints, foreground.shape[1:])
  mask = foreground.reshape(foreground.shape[0], -1).astype(jnp.float32)
  per_frame = jnp.sum(mask * jnp.min(d2, axis=-1), axis=1) / jnp.maximum(mask.sum(1), 1.0)
  return jnp.mean(per_frame)


def on_foreground_loss(keypoints, foreground):
  """L_on for keypoints T' [B, N, 2] and a foreground mask [B, H, W] in {0, 1}; scalar.

  A frame without foreground adds 0.
  """
  d2 = _pixel_keypoint_d2(keypoints, foreground.shape[1:])
  mask = foreground.reshape(foreground.shape[0], -1, 1) > 0
  nearest = jnp.min(jnp.where(mask, d2, jnp.inf), axis=1)               # [B, N]
  has_foreground = jnp.any(mask, axis=(1, 2))
  return jnp.mean(jnp.where(has_foreground[:, None], nearest, 0.0))


def separation_loss(keypoints, margin):
  """L_sep for keypoints T' [B, N, 2] ([-1, 1] units, like `margin`); scalar."""
  n = keypoints.shape[1]
  d = _pair_distances(keypoints.astype(jnp.float32))
  upper = jnp.triu(jnp.ones((n, n), bool), k=1)
  return jnp.mean(jnp.sum(jnp.where(upper, jnp.maximum(0.0, margin - d) ** 2, 0.0), axis=(1, 2)))


def spring_loss(keypoints, connectivity):
  """L_spr: sum_ij w_ij ||T'_i - T'_j||^2 for T' [B, N, 2] and W [N, N], mean over B."""
  points = keypoints.astype(jnp.float32)
  d2 = jnp.sum((points[:, :, None, :] - points[:, None, :, :]) ** 2, axis=-1)
  return jnp.mean(jnp.sum(connectivity * d2, axis=(1, 2)))


def equivariance_loss(keypoints_of_warped, keypoints, matrix, shift):
  """L_eq: MSE between T' of the warped images [B, N, 2] and the warp (A [B, 2, 2],
  t [B, 2]; ops.warp) applied to T' [B, N, 2] of the originals; gradient into both."""
  target = ops.warp_points(keypoints.astype(jnp.float32), matrix, shift)
  return jnp.mean((keypoints_of_warped.astype(jnp.float32) - target) ** 2)


def keypoint_recon_loss(keypoints_recon, keypoints):
  """MSE(T'_recon, sg(T')) over all coordinates; gradient only into the memory path."""
  target = jax.lax.stop_gradient(keypoints.astype(jnp.float32))
  return jnp.mean((keypoints_recon.astype(jnp.float32) - target) ** 2)


def commitment_loss(tokens, quantized):
  """MSE(G, sg(G')) over all entries; pulls MIX_enc's tokens towards the chosen codebook tokens."""
  return jnp.mean((tokens - jax.lax.stop_gradient(quantized)) ** 2)


def tokens_used(indices):
  """Distinct memory tokens chosen per bank in the batch, averaged over banks; indices [B, m]."""
  ordered = jnp.sort(indices, axis=0)
  return jnp.mean(1.0 + jnp.sum(ordered[1:] != ordered[:-1], axis=0))


def ppl_objective(outputs: Mapping[str, jax.Array], image: jax.Array,
                  loss_config: ml_collections.ConfigDict,
                  image_loss: Callable[[jax.Array, jax.Array], tuple], *,
                  foreground=None, foreground_weight=0.0):
  """Total PPL loss and its terms.

  Args:
    outputs: the dict returned by `PPL.__call__`.
    image: the target frame I [B, H, W, 3] in [-1, 1].
    loss_config: config.loss (boundary_weight, link_weight, keypoint_recon_weight,
      commitment_weight).
    image_loss: `(recon, target) -> (scalar, metrics dict of scalars)`.
    foreground: optional mask [B, H, W] for L_fg, weighted by `foreground_weight` (this
      step's weight, a scalar or traced value).
  Returns:
    (loss scalar, metrics dict of float32 scalars): 'loss', 'image_loss', 'boundary_loss',
    'link_loss', 'keypoint_recon_loss', 'commitment_loss', 'tokens_used' (and
    'foreground_loss' with a mask), and the image
    loss's own metrics under 'image/<name>'.
  """
  with jax.named_scope('image_loss'):
    l_ir, image_metrics = image_loss(outputs['recon'], image)
  l_b = boundary_loss(outputs['keypoints'])
  l_l = link_loss(outputs['prior'], outputs['keypoints'], outputs['connectivity'])
  l_kr = keypoint_recon_loss(outputs['keypoints_recon'], outputs['keypoints'])
  l_c = commitment_loss(outputs['tokens'], outputs['quantized'])
  loss = (l_ir + loss_config.boundary_weight * l_b + loss_config.link_weight * l_l
          + loss_config.keypoint_recon_weight * l_kr + loss_config.commitment_weight * l_c)
  metrics = {
      'loss': loss,
      'image_loss': l_ir,
      'boundary_loss': l_b,
      'link_loss': l_l,
      'keypoint_recon_loss': l_kr,
      'commitment_loss': l_c,
      'tokens_used': tokens_used(outputs['indices']),
  }
  if loss_config.separation_weight:
    l_sep = separation_loss(outputs['keypoints'], loss_config.separation_margin)
    loss = loss + loss_config.separation_weight * l_sep
    metrics['loss'] = loss
    metrics['separation_loss'] = l_sep
  if loss_config.spring_weight:
    l_spr = spring_loss(outputs['keypoints'], outputs['connectivity'])
    loss = loss + loss_config.spring_weight * l_spr
    metrics['loss'] = loss
    metrics['spring_loss'] = l_spr
  if foreground is not None:
    l_fg = foreground_loss(outputs['keypoints'], foreground)
    loss = loss + foreground_weight * l_fg
    metrics['loss'] = loss
    metrics['foreground_loss'] = l_fg
    if loss_config.on_foreground_weight:
      l_on = on_foreground_loss(outputs['keypoints'], foreground)
      loss = loss + loss_config.on_foreground_weight * l_on
      metrics['loss'] = loss
      metrics['on_foreground_loss'] = l_on
  metrics.update({f'image/{k}': v for k, v in image_metrics.items()})
  return loss, {k: jnp.asarray(v, jnp.float32) for k, v in metrics.items()}
