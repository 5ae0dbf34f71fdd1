"""U-Net decoder phi_dec (SPEC 1.6): [B, H, W, C_in] -> I_recon [B, H, W, 3].

Level l works at 1/2^l resolution with channels[l] (release 64/128/256/512/512 down to 1/16);
each level is two conv3x3-BN-LeakyReLU(0.2); 2x max-pool down; bilinear 2x up, concatenation
with the skip of the same level, two conv-BN-LReLU; final 1x1 conv to 3, no output activation.
"""

from typing import Sequence

import flax.linen as nn
import jax.numpy as jnp

from ppl_jax.models.encoder import leaky_relu, upsample2x


class DoubleConv(nn.Module):
  """Two conv3x3-BN-LeakyReLU(0.2)."""
  features: int
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x, train):
    for i in range(2):
      x = nn.Conv(self.features, (3, 3), use_bias=False, dtype=self.dtype, name=f'conv{i}')(x)
      x = nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5,
                       dtype=self.dtype, name=f'bn{i}')(x)
      x = leaky_relu(x)
    return x


class UNetDecoder(nn.Module):
  """U-Net with len(channels) levels; output float32 [B, H, W, 3]."""
  channels: Sequence[int] = (64, 128, 256, 512, 512)
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x, train):
    factor = 2 ** (len(self.channels) - 1)
    if x.shape[1] % factor or x.shape[2] % factor:
      raise ValueError(f'UNetDecoder: image size {x.shape[1:3]} must be divisible by {factor} '
                       '(2^(len(config.model.decoder_channels) - 1)).')
    x = x.astype(self.dtype)
    skips = []
    for i, c in enumerate(self.channels):
      if i:
        x = nn.max_pool(x, (2, 2), strides=(2, 2))
      x = DoubleConv(c, self.dtype, name=f'down_{i}')(x, train)
      skips.append(x)
    for i in reversed(range(len(self.channels) - 1)):
      x = jnp.concatenate([upsample2x(x), skips[i]], axis=-1)
      x = DoubleConv(self.channels[i], self.dtype, name=f'up_{i}')(x, train)
    return nn.Conv(3, (1, 1), dtype=self.dtype, name='out')(x).astype(jnp.float32)
