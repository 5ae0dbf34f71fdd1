"""Image encoder phi_enc and the per-keypoint affine head (SPEC 1.2).

Trunk (AutoLink-style): residual blocks with BatchNorm and LeakyReLU(0.2), each followed by a
2x average-pool, through `channels` (release 64-128-256-512, down to 1/16), then bilinear 2x
up-sampling residual blocks back to 1/`stride` resolution (release: 1/4) with `out_channels`
features.
Head: N softmax heatmaps over that feature map pool one feature vector per keypoint; it is
concatenated with an MLP embedding of the prior point T_i and mapped by
Linear(embed_dim) -> LeakyReLU -> Linear(6) to Theta_i (2 x 3). The last Linear has a zero
kernel and the identity bias, so an untrained encoder returns T' == T exactly.
With `pool_coordinates` (ours; the release pools features only) each heatmap also pools the
(x, y) grid of the feature map, i.e. its soft-argmax location, which joins the head's input:
CNN features carry position only weakly, and without it the affine head has to infer where
a part is from appearance alone.
"""

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from ppl_jax import ops

_IDENTITY_AFFINE = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)


def leaky_relu(x):
  return nn.leaky_relu(x, negative_slope=0.2)


class ResBlock(nn.Module):
  """conv3x3-BN-LReLU-conv3x3-BN plus a (1x1 conv-BN when widths differ) shortcut, then LReLU."""
  features: int
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x, train):
    norm = lambda name: nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5,
                                     dtype=self.dtype, name=name)
    y = nn.Conv(self.features, (3, 3), use_bias=False, dtype=self.dtype, name='conv1')(x)
    y = leaky_relu(norm('bn1')(y))
    y = nn.Conv(self.features, (3, 3), use_bias=False, dtype=self.dtype, name='conv2')(y)
    y = norm('bn2')(y)
    if x.shape[-1] != self.features:
      x = nn.Conv(self.features, (1, 1), use_bias=False, dtype=self.dtype, name='proj')(x)
      x = norm('bn_proj')(x)
    return leaky_relu(x + y)


class EncoderTrunk(nn.Module):
  """[B, H, W, 3] -> [B, H/stride, W/stride, out_channels] (stride a power of 2, 2 to
  2^(len(channels) - 1); len(channels) >= 3 down-sampling levels).

  `remat=True` recomputes each residual block in the backward pass, keeping only block inputs.
  """
  channels: Sequence[int] = (64, 128, 256, 512)
  out_channels: int = 128
  dtype: jnp.dtype = jnp.float32
  remat: bool = False
  stride: int = 4

  @nn.compact
  def __call__(self, image, train):
    if len(self.channels) < 3:
      raise ValueError(f'EncoderTrunk: config.model.encoder_channels={tuple(self.channels)} needs '
                       'at least 3 levels (the trunk goes down to 1/2^len and back up to '
                       '1/heatmap_stride).')
    ups = len(self.channels) - (self.stride.bit_length() - 1)
    if self.stride & (self.stride - 1) or not 1 <= ups < len(self.channels):
      raise ValueError(f'EncoderTrunk: config.model.heatmap_stride={self.stride} must be a power '
                       f'of 2 from 2 to {2 ** (len(self.channels) - 1)} (with '
                       f'{len(self.channels)} levels of config.model.encoder_channels).')
    factor = 2 ** len(self.channels)
    if image.shape[1] % factor or image.shape[2] % factor:
      raise ValueError(f'EncoderTrunk: image size {image.shape[1:3]} must be divisible by '
                       f'{factor} (2^len(config.model.encoder_channels)).')
    # static_argnums counts `self` as 0: argument 2 is `train`.
    block = nn.remat(ResBlock, static_argnums=(2,)) if self.remat else ResBlock
    x = image.astype(self.dtype)
    for i, c in enumerate(self.channels):
      x = block(c, self.dtype, name=f'down_{i}')(x, train)
      x = nn.avg_pool(x, (2, 2), strides=(2, 2))
    up_channels = list(reversed(self.channels[:-1]))[:ups]
    up_channels[-1] = self.out_channels
    for i, c in enumerate(up_channels):
      x = block(c, self.dtype, name=f'up_{i}')(ops.upsample2x(x), train)
    return x


class PointEmbedding(nn.Module):
  """h_T: MLP embedding of prior points, [..., 2] -> [..., features]."""
  hidden: int
  features: int

  @nn.compact
  def __call__(self, points):
    x = leaky_relu(nn.Dense(self.hidden)(points))
    return nn.Dense(self.features)(x)


class KeypointEncoder(nn.Module):
  """phi_enc + affine head: (image [B,H,W,3], prior T [N,2]) -> (T' [B,N,2], Theta [B,N,2,3])."""
  num_parts: int
  channels: Sequence[int] = (64, 128, 256, 512)
  out_channels: int = 128
  embed_dim: int = 128
  point_embed_dim: int = 256
  dtype: jnp.dtype = jnp.float32
  pool_coordinates: bool = True
  affine_init_std: float = 0.0
  affine_anchor: str = 'identity'
  remat: bool = False
  heatmap_stride: int = 4

  @nn.compact
  def __call__(self, image, prior, train):
    if prior.shape != (self.num_parts, 2):
      raise ValueError(f'KeypointEncoder: prior has shape {prior.shape}, expected '
                       f'({self.num_parts}, 2) (config.model.num_parts).')
    features = EncoderTrunk(self.channels, self.out_channels, self.dtype, self.remat,
                            self.heatmap_stride, name='trunk')(image, train)
    logits = nn.Conv(self.num_parts, (1, 1), dtype=self.dtype, name='heatmap')(features)
    b, h, w, _ = features.shape
    weights = jax.nn.softmax(logits.astype(jnp.float32).reshape(b, h * w, self.num_parts), axis=1)
    pooled = jnp.einsum('bpn,bpc->bnc', weights,
                        features.astype(jnp.float32).reshape(b, h * w, -1))   # [B, N, C]
    point = PointEmbedding(self.embed_dim, self.point_embed_dim, name='point_embed')(prior)
    parts = [pooled, jnp.broadcast_to(point[None], (b,) + point.shape)]
    soft_argmax = jnp.einsum('bpn,pc->bnc', weights, ops.pixel_grid(h, w))   # [B, N, 2]
    if self.pool_coordinates:
      parts.append(soft_argmax)
    x = jnp.concatenate(parts, axis=-1)
    x = leaky_relu(nn.Dense(self.embed_dim, name='affine_hidden')(x))
    theta = nn.Dense(6, kernel_init=nn.initializers.normal(self.affine_init_std),
                     bias_init=lambda *_: jnp.asarray(_IDENTITY_AFFINE, jnp.float32),
                     name='affine_out')(x)
    theta = theta.reshape(b, self.num_parts, 2, 3)
    if self.affine_anchor == 'soft_argmax':
      theta = theta.at[..., 2].add(soft_argmax - prior)
    keypoints = (jnp.einsum('bnij,nj->bni', theta[..., :2], prior,
                            precision=jax.lax.Precision.HIGHEST) + theta[..., 2])
    return keypoints, theta
