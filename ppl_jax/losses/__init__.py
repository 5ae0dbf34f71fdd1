"""Image reconstruction losses: frozen-VGG perceptual and pixel-space terms.

`make_image_loss(config.loss)` builds the image term L_ir of the objective;
`ppl_objective` (from `ppl_jax.losses.objective`) adds the keypoint and memory
terms.
"""

from collections.abc import Callable

import jax
import jax.numpy as jnp
import ml_collections

from ppl_jax.losses import perceptual
from ppl_jax.losses import pixel
from ppl_jax.losses.objective import ppl_objective

__all__ = ['make_image_loss', 'perceptual', 'pixel', 'ppl_objective']

PERCEPTUAL_CHOICES = ('none',) + perceptual.NETWORKS
PIXEL_CHOICES = ('none',) + tuple(pixel.PIXEL_LOSSES)

ImageLossFn = Callable[[dict, jax.Array, jax.Array],
                       tuple[jax.Array, dict[str, jax.Array]]]


def make_image_loss(
    loss_config: ml_collections.ConfigDict, *, random_vgg: bool = False,
    size: int | None = 224, dtype: jnp.dtype | str = jnp.float32,
    remat: bool = False) -> tuple[ImageLossFn, dict]:
  """Builds `image_loss_fn(vgg_params, recon, target) -> (loss, metrics)`.

  Args:
    loss_config: `config.loss`; reads perceptual ('vgg19' | 'vgg16' | 'none'),
      perceptual_weight, vgg_weights (Keras .h5 file, see
      `ppl_jax.losses.perceptual`), pixel ('none' | 'l1' | 'mse' | 'ssim' |
      'l1_ssim') and pixel_weight.
    random_vgg: use a random VGG instead of the weights file (benchmarks only;
      logs a warning).
    size: side the images are resized to before the VGG (224 as in the
      release; None keeps the input size).
    dtype: VGG compute dtype (e.g. 'bfloat16'); features are compared in f32.
    remat: recompute VGG blocks in the backward pass. XLA:CPU's buffer
      analysis shows no saving (batch 8 at 224 px: 1310 vs 1383 MiB) since
      full-resolution block 1 dominates the peak; not measured on GPU.

  Returns:
    (image_loss_fn, vgg_params). Pass vgg_params into the jitted step as an
    argument (it is {} when perceptual == 'none'). image_loss_fn takes recon,
    target float [B, H, W, 3] in [-1, 1] and returns the weighted float32 sum
    and a dict of the unweighted terms (as selected): 'perceptual',
    'perceptual/relu1_2' ... per layer, and 'pixel'.

  Raises:
    ValueError: unknown choices, both terms 'none', or a perceptual loss
      without config.loss.vgg_weights (and without random_vgg).
    FileNotFoundError, perceptual.VGGWeightsError: bad weights file.
  """
  network = loss_config.perceptual
  pixel_name = loss_config.pixel
  if network not in PERCEPTUAL_CHOICES:
    raise ValueError(f'config.loss.perceptual={network!r}; expected one of '
                     f'{PERCEPTUAL_CHOICES}.')
  if pixel_name not in PIXEL_CHOICES:
    raise ValueError(f'config.loss.pixel={pixel_name!r}; expected one of '
                     f'{PIXEL_CHOICES}.')
  if network == 'none' and pixel_name == 'none':
    raise ValueError(
        "config.loss.perceptual and config.loss.pixel are both 'none': there "
        'is no image reconstruction loss. Set config.loss.perceptual to '
        "'vgg19' / 'vgg16' (with config.loss.vgg_weights) or config.loss.pixel "
        "to 'l1' / 'mse' / 'ssim' / 'l1_ssim'.")
  dtype = jnp.dtype(dtype)

  vgg_params, preprocessing = {}, 'caffe'
  if network != 'none':
    if random_vgg:
      vgg_params = perceptual.random_vgg_params(network)
    elif not loss_config.vgg_weights:
      raise ValueError(
          f'config.loss.perceptual={network!r} needs pretrained VGG weights '
          'but config.loss.vgg_weights is empty. Download '
          f'{perceptual.KERAS_URLS[network]} and set config.loss.vgg_weights '
          "to its local path, or set config.loss.perceptual='none' and use a "
          'pixel loss (config.loss.pixel).')
    else:
      vgg_params, preprocessing = perceptual.load_vgg_weights(
          loss_config.vgg_weights, network)
    layer_names = perceptual.feature_layer_names(network)
  pixel_fn = pixel.PIXEL_LOSSES.get(pixel_name)
  perceptual_weight = float(loss_config.perceptual_weight)
  pixel_weight = float(loss_config.pixel_weight)

  def image_loss_fn(vgg_params, recon, target):
    total = jnp.zeros((), jnp.float32)
    metrics = {}
    if network != 'none':
      value, per_layer = perceptual.perceptual_loss(
          vgg_params, recon, target, network=network,
          preprocessing=preprocessing, size=size, dtype=dtype, remat=remat)
      total += perceptual_weight * value
      metrics['perceptual'] = value
      for i, name in enumerate(layer_names):
        metrics[f'perceptual/{name}'] = per_layer[i]
    if pixel_fn is not None:
      value = pixel_fn(recon, target)
      total += pixel_weight * value
      metrics['pixel'] = value
    return total, metrics

  return image_loss_fn, vgg_params
