"""MLP-Mixer encoder / decoder between keypoint sets and memory tokens (SPEC 1.7).

MIX_enc: T' [B, N, 2] -> G [B, m, d]; MIX_dec: [B, m, d] -> [B, N, 2].
The memory path always runs in float32.
"""

import flax.linen as nn
import jax.numpy as jnp


class MlpBlock(nn.Module):
  """Dense(hidden) -> GELU -> Dense(back to the input width), on the last axis."""
  hidden_dim: int

  @nn.compact
  def __call__(self, x):
    y = nn.Dense(self.hidden_dim)(x)
    y = nn.gelu(y)
    return nn.Dense(x.shape[-1])(y)


class MixerBlock(nn.Module):
  """Token mixing then channel mixing, each pre-LayerNorm and residual: [B, L, C] -> [B, L, C]."""
  tokens_mlp_ratio: int = 4
  channels_mlp_ratio: int = 4

  @nn.compact
  def __call__(self, x):
    num_tokens, channels = x.shape[-2:]
    y = nn.LayerNorm()(x)
    y = jnp.swapaxes(y, -1, -2)
    y = MlpBlock(self.tokens_mlp_ratio * num_tokens, name='token_mixing')(y)
    x = x + jnp.swapaxes(y, -1, -2)
    y = nn.LayerNorm()(x)
    return x + MlpBlock(self.channels_mlp_ratio * channels, name='channel_mixing')(y)


class TokenLinear(nn.Module):
  """A Linear over the token axis: [B, L, C] -> [B, num_tokens, C]."""
  num_tokens: int

  @nn.compact
  def __call__(self, x):
    y = nn.Dense(self.num_tokens)(jnp.swapaxes(x, -1, -2))
    return jnp.swapaxes(y, -1, -2)


class MixerEncoder(nn.Module):
  """MIX_enc: Linear(2->d), Mixer blocks over the N keypoints, LayerNorm, Linear N->m, Linear(d->d).

  [B, N, 2] -> G [B, m, d].
  """
  num_banks: int
  dim: int
  num_blocks: int = 4

  @nn.compact
  def __call__(self, points):
    x = nn.Dense(self.dim, name='embed')(points.astype(jnp.float32))
    for i in range(self.num_blocks):
      x = MixerBlock(name=f'block_{i}')(x)
    x = nn.LayerNorm(name='norm')(x)
    x = TokenLinear(self.num_banks, name='to_banks')(x)
    return nn.Dense(self.dim, name='out')(x)


class MixerDecoder(nn.Module):
  """MIX_dec: Linear m->N, Linear(d->hidden), Mixer blocks, LayerNorm, Linear(hidden->2).

  [B, m, d] -> [B, N, 2].
  """
  num_points: int
  hidden_dim: int = 32
  num_blocks: int = 1

  @nn.compact
  def __call__(self, tokens):
    x = TokenLinear(self.num_points, name='to_points')(tokens.astype(jnp.float32))
    x = nn.Dense(self.hidden_dim, name='embed')(x)
    for i in range(self.num_blocks):
      x = MixerBlock(name=f'block_{i}')(x)
    x = nn.LayerNorm(name='norm')(x)
    # Output std ~1/3 on the LayerNorm's unit-variance features, so the prior starts within
    # [-1, 1] (lecun_normal gave std ~1: about a third of the coordinates outside).
    kernel_init = nn.initializers.variance_scaling(1.0 / 9.0, 'fan_in', 'normal')
    return nn.Dense(2, kernel_init=kernel_init, name='out')(x)
