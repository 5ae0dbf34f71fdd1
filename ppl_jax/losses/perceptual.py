"""Perceptual loss L_ir: L1 between frozen ImageNet-VGG features of two images.

Networks and feature layers (the last ReLU of each of the first four blocks,
equal weights, loss = sum over layers of the mean |f(recon) - f(target)|):
- 'vgg16' (PyTorch release / AutoLink): relu1_2, relu2_2, relu3_3, relu4_3.
- 'vgg19' (paper): relu1_2, relu2_2, relu3_4, relu4_4. The paper names VGG19
  but not its layers; these are the same depths (end of blocks 1-4) as the
  release's VGG16 choice, so the two options differ only in the network.

Input: float NHWC in [-1, 1]. It is mapped to [0, 1], resized to
`size` x `size` (default 224, the release's size; bilinear without
antialiasing, like the release's `F.interpolate(..., align_corners=False)`;
`size=None` keeps the input size), then normalised for the weights' training:
- 'caffe' (the Keras files below): RGB -> BGR, x 255, minus the BGR ImageNet
  mean (103.939, 116.779, 123.68), no std division. This is what Keras'
  `vgg16.preprocess_input` / `vgg19.preprocess_input` (mode 'caffe') do, and
  what the Keras VGG weights (converted from the original Caffe models) expect.
- 'torch' (torchvision weights converted with `torchvision_to_keras_h5`): RGB
  in [0, 1], minus mean (0.485, 0.456, 0.406), divided by std
  (0.229, 0.224, 0.225), as in the release.
The two kinds of weights see inputs of different scale (0-255 vs unit
variance), so their feature magnitudes, and the loss scale relative to the
keypoint terms, differ; the release's loss weights assume torchvision VGG16.
Re-tune config.loss.perceptual_weight when switching.

Weights file (nothing is downloaded at run time; set `config.loss.vgg_weights`):
- VGG16: https://storage.googleapis.com/tensorflow/keras-applications/vgg16/vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5
- VGG19: https://storage.googleapis.com/tensorflow/keras-applications/vgg19/vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5
  (the same files as github.com/fchollet/deep-learning-models/releases/tag/v0.1;
  the files with the classifier top, without `_notop`, work too).
These need no conversion: they are read with h5py. Layout: top-level HDF5
groups `block{b}_conv{c}` (b = 1..5; c = 1..2 for blocks 1-2, and 1..3 (VGG16)
or 1..4 (VGG19) for blocks 3-5), each holding a kernel [3, 3, in, out] (HWIO,
cross-correlation, the layout of `flax.linen.Conv`) and a bias [out], named
`block1_conv1_W_1:0` / `block1_conv1_b_1:0` (Keras 1 files, the published ones)
or `block1_conv1/kernel:0` / `block1_conv1/bias:0` (Keras 2 saves, nested one
level deeper); whole-model saves keep the groups under `model_weights/`.
Theano-ordered files (`*_th_dim_ordering_th_kernels*`) are rejected.

torchvision weights (`vgg16-397923af.pth`, `vgg19-dcbb9e9d.pth`) need torch
to read; on a machine with torch run
  sd = torch.load('vgg16-397923af.pth'); np.savez('vgg16_tv.npz', **{k: v.numpy() for k, v in sd.items()})
then here
  torchvision_to_keras_h5(dict(np.load('vgg16_tv.npz')), 'vgg16', 'vgg16_tv.h5')
which writes the Keras layout above, marked so that the 'torch' normalisation
is used when it is loaded.
"""

from collections.abc import Mapping
import os
import re

from absl import logging
import flax.linen as nn
import h5py
import jax
import jax.numpy as jnp
import numpy as np

from ppl_jax.models.decoder import max_pool2x

NETWORKS = ('vgg16', 'vgg19')
BLOCK_CONVS = {'vgg16': (2, 2, 3, 3, 3), 'vgg19': (2, 2, 4, 4, 4)}
BLOCK_WIDTHS = (64, 128, 256, 512, 512)
FEATURE_BLOCKS = 4  # features are taken after blocks 1..4; block 5 is unused
KERAS_URLS = {
    net: ('https://storage.googleapis.com/tensorflow/keras-applications/'
          f'{net}/{net}_weights_tf_dim_ordering_tf_kernels_notop.h5')
    for net in NETWORKS
}
CAFFE_BGR_MEAN = (103.939, 116.779, 123.68)
TORCH_RGB_MEAN = (0.485, 0.456, 0.406)
TORCH_RGB_STD = (0.229, 0.224, 0.225)
PREPROCESSING = ('caffe', 'torch')
# Root attribute written by `torchvision_to_keras_h5`; Keras files lack it.
PREPROCESSING_ATTR = 'ppl_jax_preprocessing'
_CONV_NAME = re.compile(r'block(\d+)_conv(\d+)')


class VGGWeightsError(ValueError):
  """A VGG weights file is unreadable, for another network or misshapen."""


def conv_layer_names(network: str) -> list[str]:
  """All conv layers of `network` in order, e.g. ['block1_conv1', ...]."""
  _check_network(network)
  return [f'block{b + 1}_conv{c + 1}'
          for b, n in enumerate(BLOCK_CONVS[network]) for c in range(n)]


def feature_layer_names(network: str) -> list[str]:
  """Names of the compared ReLU outputs, e.g. ['relu1_2', ..., 'relu4_3']."""
  _check_network(network)
  return [f'relu{b + 1}_{BLOCK_CONVS[network][b]}'
          for b in range(FEATURE_BLOCKS)]


def expected_shapes(network: str) -> dict[str, tuple[tuple[int, ...], ...]]:
  """{'block1_conv1': ((3, 3, 3, 64), (64,)), ...} for all 5 blocks."""
  shapes = {}
  in_ch = 3
  for b, n in enumerate(BLOCK_CONVS[network]):
    out = BLOCK_WIDTHS[b]
    for c in range(n):
      shapes[f'block{b + 1}_conv{c + 1}'] = ((3, 3, in_ch, out), (out,))
      in_ch = out
  return shapes


def _check_network(network: str) -> None:
  if network not in NETWORKS:
    raise ValueError(f'Unknown VGG network {network!r}; expected one of '
                     f'{NETWORKS} (config.loss.perceptual).')


class VGGBlock(nn.Module):
  """[max-pool 2x2] then `num_convs` x (3x3 conv + ReLU); NHWC -> NHWC."""
  features: int
  num_convs: int
  pool: bool
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    if self.pool:
      x = max_pool2x(x)
    for c in range(self.num_convs):
      x = nn.Conv(self.features, (3, 3), padding='SAME', dtype=self.dtype,
                  param_dtype=jnp.float32, name=f'conv{c + 1}')(x)
      x = nn.relu(x)
    return x


class VGGFeatures(nn.Module):
  """Blocks 1-4 of VGG16/19 on preprocessed input [B, H, W, 3].

  Returns the 4 feature maps [B, H / 2^b, W / 2^b, 64 * 2^min(b, 3)],
  b = 0..3, in `dtype`. Params: {'block{b}': {'conv{c}': {'kernel', 'bias'}}}.
  `remat` recomputes each block in the backward pass instead of storing it.
  """
  network: str = 'vgg19'
  dtype: jnp.dtype = jnp.float32
  remat: bool = False

  @nn.compact
  def __call__(self, x: jax.Array) -> list[jax.Array]:
    block_cls = nn.remat(VGGBlock) if self.remat else VGGBlock
    x = x.astype(self.dtype)
    features = []
    for b in range(FEATURE_BLOCKS):
      x = block_cls(BLOCK_WIDTHS[b], BLOCK_CONVS[self.network][b], pool=b > 0,
                    dtype=self.dtype, name=f'block{b + 1}')(x)
      features.append(x)
    return features


def preprocess(images: jax.Array, preprocessing: str = 'caffe',
               size: int | None = 224) -> jax.Array:
  """[-1, 1] RGB [B, H, W, 3] -> VGG input [B, size, size, 3] float32."""
  if preprocessing not in PREPROCESSING:
    raise ValueError(f'Unknown VGG preprocessing {preprocessing!r}; expected '
                     f'one of {PREPROCESSING}.')
  x = (images.astype(jnp.float32) + 1.0) / 2.0
  if size:
    x = jax.image.resize(x, (x.shape[0], size, size, x.shape[3]), 'bilinear',
                         antialias=False)
  if preprocessing == 'caffe':
    return x[..., ::-1] * 255.0 - jnp.asarray(CAFFE_BGR_MEAN, jnp.float32)
  return ((x - jnp.asarray(TORCH_RGB_MEAN, jnp.float32))
          / jnp.asarray(TORCH_RGB_STD, jnp.float32))


def _expected_layout(path: str, network: str) -> str:
  layers = conv_layer_names(network)
  return (f'Expected a Keras {network.upper()} weights file such as '
          f'{os.path.basename(KERAS_URLS[network])} (download: '
          f'{KERAS_URLS[network]}): HDF5 groups {layers[0]} ... {layers[-1]} '
          f'({len(layers)} conv layers), each with a kernel [3, 3, in, out] '
          f'and a bias [out] (see ppl_jax/losses/perceptual.py). File: {path}')


def _attr_strings(group: h5py.Group, name: str) -> list[str]:
  """A Keras string-list attribute, possibly split into name0, name1, ..."""
  if name in group.attrs:
    values = list(group.attrs[name])
  else:
    values, chunk = [], 0
    while f'{name}{chunk}' in group.attrs:
      values.extend(group.attrs[f'{name}{chunk}'])
      chunk += 1
  return [v.decode('utf8') if isinstance(v, bytes) else str(v) for v in values]


def _layer_datasets(group: h5py.Group) -> list[h5py.Dataset]:
  """The weight datasets of one Keras layer group (either naming variant)."""
  names = _attr_strings(group, 'weight_names')
  if names:
    return [group[n] for n in names if n in group]
  found = []

  def visit(_, obj):
    if isinstance(obj, h5py.Dataset):
      found.append(obj)

  group.visititems(visit)
  return found


def load_vgg_weights(path: str, network: str) -> tuple[dict, str]:
  """Reads blocks 1-4 of a Keras-layout VGG weights file.

  Args:
    path: the .h5 file (module docstring: where to get it).
    network: 'vgg16' or 'vgg19'; the file must hold exactly this network.

  Returns:
    (params, preprocessing): params as `VGGFeatures` expects them (float32
    jax arrays), and 'caffe' (Keras files) or 'torch' (converted torchvision).

  Raises:
    FileNotFoundError: no file at `path`.
    VGGWeightsError: not HDF5, another network, or a missing / misshapen layer.
  """
  _check_network(network)
  path = os.fspath(path)
  layout = _expected_layout(path, network)
  if not os.path.isfile(path):
    raise FileNotFoundError(f'VGG weights file not found: {path}. {layout}')
  try:
    f = h5py.File(path, 'r')
  except OSError as e:
    raise VGGWeightsError(f'Cannot read {path} as HDF5 ({e}). {layout}') from e
  with f:
    root = f['model_weights'] if 'model_weights' in f else f
    names = _attr_strings(root, 'layer_names') or list(root.keys())
    convs = {n for n in names if _CONV_NAME.fullmatch(n)}
    wanted = conv_layer_names(network)
    if convs != set(wanted):
      others = [n for n in NETWORKS if set(conv_layer_names(n)) == convs]
      what = (f'it holds the {others[0].upper()} conv layers' if others else
              f'missing conv layers {sorted(set(wanted) - convs)}, unexpected '
              f'{sorted(convs - set(wanted))}')
      raise VGGWeightsError(
          f'{path} is not a {network.upper()} weights file: {what}. '
          f'Set config.loss.perceptual to match the file or use the right '
          f'file. {layout}')
    preprocessing = f.attrs.get(PREPROCESSING_ATTR, 'caffe')
    if isinstance(preprocessing, bytes):
      preprocessing = preprocessing.decode('utf8')
    if preprocessing not in PREPROCESSING:
      raise VGGWeightsError(
          f'{path}: attribute {PREPROCESSING_ATTR}={preprocessing!r} is not '
          f'one of {PREPROCESSING}.')
    shapes = expected_shapes(network)
    params = {}
    for name in wanted:
      block, conv = map(int, _CONV_NAME.fullmatch(name).groups())
      if block > FEATURE_BLOCKS:
        continue
      if name not in root or not isinstance(root[name], h5py.Group):
        raise VGGWeightsError(f'{path}: layer {name} is listed but has no '
                              f'weights group. {layout}')
      arrays = [np.asarray(d, np.float32) for d in _layer_datasets(root[name])]
      kernels = [a for a in arrays if a.ndim == 4]
      biases = [a for a in arrays if a.ndim == 1]
      kernel_shape, bias_shape = shapes[name]
      if (len(arrays) != 2 or len(kernels) != 1 or len(biases) != 1
          or kernels[0].shape != kernel_shape or biases[0].shape != bias_shape):
        found = [a.shape for a in arrays]
        hint = (' (a Theano-ordered [out, in, 3, 3] file? use the '
                '*_tf_dim_ordering_tf_kernels* file)'
                if kernels and kernels[0].shape[2:] == (3, 3) else '')
        raise VGGWeightsError(
            f'{path}: layer {name} has weights of shapes {found}, expected '
            f'kernel {kernel_shape} and bias {bias_shape}{hint}. {layout}')
      params.setdefault(f'block{block}', {})[f'conv{conv}'] = {
          'kernel': jnp.asarray(kernels[0]), 'bias': jnp.asarray(biases[0])}
  logging.info('Loaded %s weights (blocks 1-%d, %s preprocessing) from %s',
               network, FEATURE_BLOCKS, preprocessing, path)
  return params, preprocessing


def random_vgg_params(network: str, seed: int = 0) -> dict:
  """He-normal kernels, zero biases, for benchmarks only (logs a warning)."""
  _check_network(network)
  logging.warning(
      'Using a RANDOM %s for the perceptual loss (random_weights=True): '
      'only meaningful for benchmarks, not for training.', network)
  # numpy rather than jax.random / Module.init: drawing ~10M threefry normals
  # takes several seconds on CPU, numpy a fraction of a second.
  rng = np.random.default_rng(seed)
  params = {}
  for name, (kernel_shape, bias_shape) in expected_shapes(network).items():
    block, conv = map(int, _CONV_NAME.fullmatch(name).groups())
    if block > FEATURE_BLOCKS:
      continue
    std = np.sqrt(2.0 / np.prod(kernel_shape[:3]))
    kernel = rng.standard_normal(kernel_shape, dtype=np.float32) * std
    params.setdefault(f'block{block}', {})[f'conv{conv}'] = {
        'kernel': jnp.asarray(kernel, jnp.float32),
        'bias': jnp.zeros(bias_shape, jnp.float32)}
  return params


def torchvision_to_keras_h5(state_dict: Mapping[str, np.ndarray], network: str,
                            path: str) -> None:
  """Writes torchvision VGG weights as a Keras-layout file that loads here.

  Args:
    state_dict: torchvision `vgg16()` / `vgg19()` state dict as numpy arrays
      (keys 'features.{i}.weight' [out, in, 3, 3], 'features.{i}.bias' [out];
      other keys, e.g. the classifier, are ignored).
    network: 'vgg16' or 'vgg19'.
    path: output .h5 file; marked for the 'torch' normalisation.
  """
  _check_network(network)
  indices = sorted({int(m.group(1)) for k in state_dict
                    if (m := re.fullmatch(r'features\.(\d+)\.weight', k))})
  names = conv_layer_names(network)
  if len(indices) != len(names):
    raise ValueError(
        f'The state dict has {len(indices)} conv layers (features.i.weight); '
        f'{network} has {len(names)}.')
  shapes = expected_shapes(network)
  with h5py.File(path, 'w') as f:
    f.attrs[PREPROCESSING_ATTR] = 'torch'
    f.attrs['layer_names'] = [n.encode('utf8') for n in names]
    for name, i in zip(names, indices):
      kernel = np.transpose(
          np.asarray(state_dict[f'features.{i}.weight'], np.float32),
          (2, 3, 1, 0))  # OIHW -> HWIO; both frameworks cross-correlate
      bias = np.asarray(state_dict[f'features.{i}.bias'], np.float32)
      if (kernel.shape, bias.shape) != shapes[name]:
        raise ValueError(
            f'features.{i} (-> {name}) has kernel {kernel.shape} (HWIO) and '
            f'bias {bias.shape}, expected {shapes[name]}.')
      group = f.create_group(name)
      group.attrs['weight_names'] = [f'{name}/kernel:0'.encode('utf8'),
                                     f'{name}/bias:0'.encode('utf8')]
      group.create_dataset(f'{name}/kernel:0', data=kernel)
      group.create_dataset(f'{name}/bias:0', data=bias)


def perceptual_loss(params: dict, recon: jax.Array, target: jax.Array, *,
                    network: str, preprocessing: str = 'caffe',
                    size: int | None = 224, dtype: jnp.dtype = jnp.float32,
                    remat: bool = False) -> tuple[jax.Array, jax.Array]:
  """VGG feature L1 between `recon` and `target` ([B, H, W, 3] in [-1, 1]).

  Returns (loss, per_layer): per_layer [4] = mean |f_l(recon) - f_l(target)|
  for the layers `feature_layer_names(network)`, loss = per_layer.sum()
  (equal weights, as in the release). The VGG is frozen (stop_gradient on
  params and target); gradients flow only into `recon`. Features are computed
  in `dtype` and compared in float32.
  """
  vgg = VGGFeatures(network, dtype=dtype, remat=remat)
  variables = {'params': jax.lax.stop_gradient(params)}
  recon_features = vgg.apply(variables, preprocess(recon, preprocessing, size))
  # A separate pass (not one concatenated batch): the target pass then depends
  # on nothing differentiated, so autodiff stores no activations for it and
  # runs no backward pass through it.
  target_features = vgg.apply(
      variables, preprocess(jax.lax.stop_gradient(target), preprocessing, size))
  per_layer = jnp.stack([
      jnp.mean(jnp.abs(r.astype(jnp.float32) - t.astype(jnp.float32)))
      for r, t in zip(recon_features, target_features)])
  return jnp.sum(per_layer), per_layer
