"""The composed Pose Prior Learner (SPEC section 1).

One forward pass on frames I (`image`) and I_ref (`reference`), both [B, H, W, 3] in [-1, 1]:
  T        = sg(MIX_dec(mean_k M))            keypoint prior [N, 2] ('memory' variant), or the
                                              explicit parameter T ('predefined' | 'random')
  T', Theta = phi_enc(I, T)                   T'_i = Theta_i [T_i, 1]
  W        = softplus(sym(logits)), diag 0    connectivity prior [N, N]
  S        = link_heatmap(T', W)              [B, H, W]; with wide_thick > 0 (ours)
             max(S, link_heatmap(T', W_wide, wide_thick)): a pair's link thin, wide or both
  I_recon  = phi_dec(concat(I_ref', S))       I_ref' = I_ref ('reference_frame', paper) or
                                              alpha * masked I ('masked_self', release)
  G        = MIX_enc(sg(T'))                  [B, m, d]
  G'       = nearest memory tokens            [B, m, d] (EMA codebook update when training)
  T'_recon = MIX_dec(G + sg(G' - G))          straight-through
The three stop-gradients are SPEC 1.1 (T for the image pathway), 1.7 (memory input T') and the
straight-through estimator. The memory path (MIX_enc, M, MIX_dec) always runs in float32;
config.model.dtype = 'bfloat16' makes the encoder/decoder convolutions compute in bfloat16 with
float32 parameters.
"""

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from ppl_jax import ops
from ppl_jax.models.decoder import UNetDecoder
from ppl_jax.models.encoder import KeypointEncoder
from ppl_jax.models.memory import HierarchicalMemory
from ppl_jax.models.mixer import MixerDecoder, MixerEncoder
from ppl_jax.models.priors import Connectivity, KeypointPrior

CONTEXTS = ('reference_frame', 'masked_self')
AFFINE_ANCHORS = ('identity', 'soft_argmax')
KEYPOINT_PRIORS = ('memory', 'predefined', 'random')
CONNECTIVITY_PRIORS = ('random', 'predefined')
DTYPES = {'float32': jnp.float32, 'bfloat16': jnp.bfloat16}


class PPL(nn.Module):
  """Pose Prior Learner; see the module docstring. Build it with `build_model(config)`."""
  num_parts: int = 16
  image_size: int = 256
  thick: float = 5e-4
  wide_thick: float = 0.0
  wide_connectivity_init_mean: float = -4.0
  context: str = 'reference_frame'
  encoder_channels: Sequence[int] = (64, 128, 256, 512)
  encoder_out_channels: int = 128
  heatmap_stride: int = 4
  decoder_channels: Sequence[int] = (64, 128, 256, 512, 512)
  embed_dim: int = 128
  point_embed_dim: int = 256
  pool_coordinates: bool = True
  affine_init_std: float = 0.0
  affine_anchor: str = 'identity'
  memory_banks: int = 34
  memory_tokens: int = 16
  memory_dim: int = 512
  memory_decay: float = 0.9
  memory_eps: float = 1e-5
  memory_reseed_below: float = 0.0
  mixer_enc_blocks: int = 4
  mixer_dec_blocks: int = 1
  mixer_dec_dim: int = 32
  keypoint_prior_init: str = 'memory'       # config.model.keypoint_prior
  connectivity_init: str = 'random'         # config.model.connectivity_prior
  connectivity_init_mean: float = -4.0
  connectivity_init_std: float = 1.0
  prior_template: str = 'human16'
  dtype: str = 'float32'
  remat_encoder: bool = False
  remat_decoder: bool = False

  def setup(self):
    _check_choice('context', self.context, CONTEXTS)
    _check_choice('affine_anchor', self.affine_anchor, AFFINE_ANCHORS)
    _check_choice('keypoint_prior', self.keypoint_prior_init, KEYPOINT_PRIORS)
    _check_choice('connectivity_prior', self.connectivity_init, CONNECTIVITY_PRIORS)
    _check_choice('dtype', self.dtype, tuple(DTYPES))
    dtype = DTYPES[self.dtype]
    self.encoder = KeypointEncoder(
        self.num_parts, tuple(self.encoder_channels), self.encoder_out_channels, self.embed_dim,
        self.point_embed_dim, dtype, self.pool_coordinates, self.affine_init_std,
        self.affine_anchor, self.remat_encoder, self.heatmap_stride)
    self.decoder = UNetDecoder(tuple(self.decoder_channels), dtype, self.remat_decoder)
    self.mix_enc = MixerEncoder(self.memory_banks, self.memory_dim, self.mixer_enc_blocks)
    self.memory = HierarchicalMemory(self.memory_banks, self.memory_tokens, self.memory_dim,
                                     self.memory_decay, self.memory_eps,
                                     self.memory_reseed_below)
    self.mix_dec = MixerDecoder(self.num_parts, self.mixer_dec_dim, self.mixer_dec_blocks)
    self.connectivity = Connectivity(
        self.num_parts, self.connectivity_init, self.prior_template,
        self.connectivity_init_mean, self.connectivity_init_std,
        self.wide_connectivity_init_mean if self.wide_thick > 0 else None)
    if self.keypoint_prior_init != 'memory':
      self.keypoint_prior = KeypointPrior(self.num_parts, self.keypoint_prior_init,
                                          self.prior_template)
    if self.context == 'masked_self':
      self.alpha = self.param('alpha', nn.initializers.ones, (), jnp.float32)

  def prior(self):
    """Keypoint prior T [N, 2]; the memory-distilled one carries no gradient."""
    if self.keypoint_prior_init == 'memory':
      return jax.lax.stop_gradient(self.mix_dec(self.memory.pooled()[None])[0])
    return self.keypoint_prior()

  def estimate(self, image, *, train):
    """(keypoints T' [B, N, 2], prior T [N, 2]) for images [B, H, W, 3]."""
    keypoints, _, prior = self._estimate(image, train)
    return keypoints, prior

  def recall(self, keypoints):
    """T'_recon [B, N, 2]: keypoints encoded, quantised against M (no update), decoded."""
    _, quantized, _ = self.memory(self.mix_enc(jax.lax.stop_gradient(keypoints)), train=False)
    return self.mix_dec(quantized)

  def memory_indices(self, keypoints):
    """int32 [B, m]: the memory token each bank quantises the encoded T' [B, N, 2] to."""
    _, _, indices = self.memory(self.mix_enc(jax.lax.stop_gradient(keypoints)), train=False)
    return indices

  def render_and_decode(self, reference, keypoints, *, train, link_weights=None):
    """(I_recon [B, H, W, 3], S [B, H, W]) from the reference [B, H, W, 3] and T' [B, N, 2].

    link_weights: [K, N, N] in place of the learned (W, then W_wide when wide_thick > 0).
    """
    self._check_image('reference', reference)
    weights = self.connectivity.per_width() if link_weights is None else link_weights
    heatmap = ops.link_heatmap(keypoints, weights[0], size=reference.shape[1:3],
                               thick=self.thick)
    if self.wide_thick > 0:
      heatmap = jnp.maximum(heatmap, ops.link_heatmap(
          keypoints, weights[1], size=reference.shape[1:3], thick=self.wide_thick))
    if self.context == 'masked_self':
      reference = reference * self.alpha
    x = jnp.concatenate([reference.astype(jnp.float32), heatmap[..., None]], axis=-1)
    return self.decoder(x, train), heatmap

  def __call__(self, image, reference, *, train):
    """One training/eval pass; returns the output dict of the module docstring.

    Keys: 'prior' [N, 2], 'theta' [B, N, 2, 3], 'keypoints' [B, N, 2], 'connectivity' [N, N]
    (W, or max(W, W_wide) with a wide map),
    'heatmap' [B, H, W], 'recon' [B, H, W, 3], 'tokens' G [B, m, d], 'quantized' G' [B, m, d]
    (codebook vectors, no gradient), 'keypoints_recon' [B, N, 2], 'indices' int32 [B, m].
    """
    keypoints, theta, prior = self._estimate(image, train)
    connectivity = self.connectivity()
    recon, heatmap = self.render_and_decode(reference, keypoints, train=train)
    tokens = self.mix_enc(jax.lax.stop_gradient(keypoints))
    quantized_st, quantized, indices = self.memory(tokens, train=train)
    return {
        'prior': prior,
        'theta': theta,
        'keypoints': keypoints,
        'connectivity': connectivity,
        'heatmap': heatmap,
        'recon': recon,
        'tokens': tokens,
        'quantized': quantized,
        'keypoints_recon': self.mix_dec(quantized_st),
        'indices': indices,
    }

  def _estimate(self, image, train):
    self._check_image('image', image)
    prior = self.prior()
    keypoints, theta = self.encoder(image, prior, train)
    return keypoints, theta, prior

  def _check_image(self, name, x):
    expected = (self.image_size, self.image_size, 3)
    if x.ndim != 4 or tuple(x.shape[1:]) != expected:
      raise ValueError(f'PPL: {name} has shape {x.shape}, expected [B, {expected[0]}, '
                       f'{expected[1]}, 3] (config.data.image_size={self.image_size}).')


def _check_choice(field, value, choices):
  if value not in choices:
    raise ValueError(f'config.model.{field}={value!r} is not one of {choices}.')


def build_model(config: ml_collections.ConfigDict) -> PPL:
  """PPL from config.model and config.data.image_size."""
  m = config.model
  return PPL(
      num_parts=m.num_parts,
      image_size=config.data.image_size,
      thick=m.thick,
      wide_thick=m.wide_thick,
      wide_connectivity_init_mean=m.wide_connectivity_init_mean,
      context=m.context,
      encoder_channels=tuple(m.encoder_channels),
      encoder_out_channels=m.encoder_out_channels,
      heatmap_stride=m.heatmap_stride,
      decoder_channels=tuple(m.decoder_channels),
      embed_dim=m.embed_dim,
      point_embed_dim=m.point_embed_dim,
      pool_coordinates=m.pool_coordinates,
      affine_init_std=m.affine_init_std,
      affine_anchor=m.affine_anchor,
      memory_banks=m.memory_banks,
      memory_tokens=m.memory_tokens,
      memory_dim=m.memory_dim,
      memory_decay=m.memory_decay,
      memory_eps=m.memory_eps,
      memory_reseed_below=m.memory_reseed_below,
      mixer_enc_blocks=m.mixer_enc_blocks,
      mixer_dec_blocks=m.mixer_dec_blocks,
      mixer_dec_dim=m.mixer_dec_dim,
      keypoint_prior_init=m.keypoint_prior,
      connectivity_init=m.connectivity_prior,
      connectivity_init_mean=m.connectivity_init_mean,
      connectivity_init_std=m.connectivity_init_std,
      prior_template=m.prior_template,
      dtype=m.dtype,
      remat_encoder=m.remat_encoder,
      remat_decoder=m.remat_decoder,
  )
