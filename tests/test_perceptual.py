"""VGG weight loading, forward pass and perceptual / combined image loss.

Fake Keras-layout weight files (random kernels of the real shapes) are written
with h5py; references are numpy float64 re-derivations.
"""

import functools
import logging

import h5py
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from ppl_jax.losses import make_image_loss
from ppl_jax.losses import perceptual

CONVS = {'vgg16': (2, 2, 3, 3, 3), 'vgg19': (2, 2, 4, 4, 4)}
WIDTHS = (64, 128, 256, 512, 512)


def _real_layers(network, rng):
  """[(name, kernel HWIO, bias)] for all conv layers, He-scaled random."""
  layers, cin = [], 3
  for b, n in enumerate(CONVS[network]):
    for c in range(n):
      cout = WIDTHS[b]
      k = rng.standard_normal((3, 3, cin, cout), dtype=np.float32)
      k *= np.float32(np.sqrt(2 / (9 * cin)))
      bias = 0.1 * rng.standard_normal(cout, dtype=np.float32)
      layers.append((f'block{b + 1}_conv{c + 1}', k, bias))
      cin = cout
  return layers


def _write_keras(path, layers, *, variant='flat', model_weights=False):
  """Keras HDF5 weights layout: 'flat' = Keras 1 (`block1_conv1_W_1:0` in the
  layer group, with weight_names), 'nested' = Keras 2 (`block1_conv1/kernel:0`
  one level down; written without the weight_names attribute)."""
  with h5py.File(path, 'w') as f:
    root = f.create_group('model_weights') if model_weights else f
    names = ['input_1']
    root.create_group('input_1').attrs['weight_names'] = []
    for name, k, bias in layers:
      g = root.create_group(name)
      if variant == 'flat':
        g.create_dataset(f'{name}_W_1:0', data=k)
        g.create_dataset(f'{name}_b_1:0', data=bias)
        g.attrs['weight_names'] = [f'{name}_W_1:0'.encode(),
                                   f'{name}_b_1:0'.encode()]
      else:
        g.create_dataset(f'{name}/kernel:0', data=k)
        g.create_dataset(f'{name}/bias:0', data=bias)
      names.append(name)
      if name.endswith('conv2') and name < 'block3':
        pool = name.replace('conv2', 'pool')
        root.create_group(pool)
        names.append(pool)
    root.attrs['layer_names'] = [n.encode() for n in names]


@pytest.fixture(scope='module')
def vgg16_file(tmp_path_factory):
  layers = _real_layers('vgg16', np.random.default_rng(0))
  path = (tmp_path_factory.mktemp('vgg')
          / 'vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5')
  _write_keras(path, layers, variant='flat')
  return path, {name: (k, b) for name, k, b in layers}


@pytest.fixture(scope='module')
def vgg16_params(vgg16_file):
  params, preprocessing = perceptual.load_vgg_weights(vgg16_file[0], 'vgg16')
  assert preprocessing == 'caffe'
  return params


def _np_conv_relu(x, k, b):
  """3x3 'SAME' correlation + bias + ReLU, float64; [B,H,W,C] -> [B,H,W,O]."""
  xp = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
  win = np.lib.stride_tricks.sliding_window_view(xp, (3, 3), axis=(1, 2))
  y = np.einsum('bhwcij,ijco->bhwo', win, k.astype(np.float64)) + b
  return np.maximum(y, 0)


def _np_relu1_2(images, weights, preprocessing):
  """relu1_2 features of [-1, 1] RGB images, numpy float64, no resize."""
  x = (images.astype(np.float64) + 1) / 2
  if preprocessing == 'caffe':  # Keras preprocess_input(mode='caffe')
    x = x[..., ::-1] * 255 - np.array([103.939, 116.779, 123.68])
  else:
    x = (x - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225])
  for name in ('block1_conv1', 'block1_conv2'):
    x = _np_conv_relu(x, *weights[name])
  return x


def _images(seed, shape=(2, 8, 8, 3)):
  return np.random.default_rng(seed).uniform(-1, 1, shape).astype(np.float32)


def test_loaded_params_equal_file_arrays(vgg16_file, vgg16_params):
  path, _ = vgg16_file
  with h5py.File(path, 'r') as f:
    for b in range(1, 5):
      for c in range(1, CONVS['vgg16'][b - 1] + 1):
        name = f'block{b}_conv{c}'
        got = vgg16_params[f'block{b}'][f'conv{c}']
        group = f[name]
        np.testing.assert_array_equal(got['kernel'], group[f'{name}_W_1:0'][()])
        np.testing.assert_array_equal(got['bias'], group[f'{name}_b_1:0'][()])
  assert set(vgg16_params) == {'block1', 'block2', 'block3', 'block4'}


def test_nested_keras2_layout_vgg19(tmp_path):
  layers = _real_layers('vgg19', np.random.default_rng(1))
  path = tmp_path / 'vgg19_full_model.h5'
  _write_keras(path, layers, variant='nested', model_weights=True)
  params, preprocessing = perceptual.load_vgg_weights(str(path), 'vgg19')
  assert preprocessing == 'caffe'
  for name, k, bias in layers[:12]:  # blocks 1-4
    b, c = name[5], name[-1]
    np.testing.assert_array_equal(params[f'block{b}'][f'conv{c}']['kernel'], k)
    np.testing.assert_array_equal(params[f'block{b}'][f'conv{c}']['bias'], bias)
  assert set(params['block3']) == {'conv1', 'conv2', 'conv3', 'conv4'}
  # The same file asked for as VGG16 is rejected.
  with pytest.raises(perceptual.VGGWeightsError,
                     match='vgg19_full_model.h5 is not a VGG16.*VGG19'):
    perceptual.load_vgg_weights(str(path), 'vgg16')


def test_first_block_matches_numpy(vgg16_file, vgg16_params):
  images = _images(2)
  want = _np_relu1_2(images, vgg16_file[1], 'caffe')
  x = perceptual.preprocess(jnp.asarray(images), 'caffe', size=None)
  features = perceptual.VGGFeatures('vgg16').apply({'params': vgg16_params}, x)
  np.testing.assert_allclose(features[0], want, rtol=1e-4, atol=1e-3)
  assert [f.shape for f in features] == [
      (2, 8, 8, 64), (2, 4, 4, 128), (2, 2, 2, 256), (2, 1, 1, 512)]


def test_perceptual_loss_first_layer_and_identity(vgg16_file, vgg16_params):
  recon, target = _images(3), _images(4)
  weights = vgg16_file[1]
  want = np.abs(_np_relu1_2(recon, weights, 'caffe')
                - _np_relu1_2(target, weights, 'caffe')).mean()
  loss, per_layer = jax.jit(functools.partial(
      perceptual.perceptual_loss, network='vgg16', size=None))(
          vgg16_params, recon, target)
  assert per_layer.shape == (4,)
  np.testing.assert_allclose(per_layer[0], want, rtol=1e-4)
  np.testing.assert_allclose(loss, np.sum(per_layer), rtol=1e-6)
  assert float(loss) > 0 and np.all(np.asarray(per_layer) > 0)
  same, _ = jax.jit(functools.partial(
      perceptual.perceptual_loss, network='vgg16', size=16))(
          vgg16_params, recon, recon)
  assert float(same) == 0.0


def test_torchvision_converter_roundtrip_and_torch_preprocessing(
    vgg16_file, tmp_path):
  weights = vgg16_file[1]
  # torchvision vgg16.features: convs at these indices, ReLU / pool between.
  indices = [0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28]
  state = {}
  for i, name in zip(indices, weights):
    k, b = weights[name]
    state[f'features.{i}.weight'] = np.transpose(k, (3, 2, 0, 1))  # OIHW
    state[f'features.{i}.bias'] = b
  state['classifier.0.weight'] = np.zeros((4, 4), np.float32)
  path = tmp_path / 'vgg16_tv.h5'
  perceptual.torchvision_to_keras_h5(state, 'vgg16', str(path))
  params, preprocessing = perceptual.load_vgg_weights(str(path), 'vgg16')
  assert preprocessing == 'torch'
  np.testing.assert_array_equal(params['block4']['conv3']['kernel'],
                                weights['block4_conv3'][0])
  images = _images(5)
  x = perceptual.preprocess(jnp.asarray(images), 'torch', size=None)
  features = perceptual.VGGFeatures('vgg16').apply({'params': params}, x)
  np.testing.assert_allclose(features[0], _np_relu1_2(images, weights, 'torch'),
                             rtol=1e-4, atol=1e-4)


def test_remat_and_bfloat16_agree(vgg16_params):
  recon, target = _images(6), _images(7)

  def loss(r, **kw):
    return perceptual.perceptual_loss(vgg16_params, r, target,
                                      network='vgg16', size=None, **kw)[0]

  base, grad = jax.jit(jax.value_and_grad(loss))(recon)
  remat_value, remat_grad = jax.jit(jax.value_and_grad(
      lambda r: loss(r, remat=True)))(recon)
  np.testing.assert_allclose(remat_value, base, rtol=1e-5)
  np.testing.assert_allclose(remat_grad, grad, rtol=1e-4, atol=1e-6)
  bf16 = jax.jit(lambda r: loss(r, dtype=jnp.bfloat16))(recon)
  np.testing.assert_allclose(bf16, base, rtol=5e-2)


def test_missing_and_unreadable_files(tmp_path):
  missing = tmp_path / 'vgg19_missing.h5'
  with pytest.raises(FileNotFoundError, match='vgg19_missing.h5.*block1_conv1'):
    perceptual.load_vgg_weights(str(missing), 'vgg19')
  text = tmp_path / 'not_hdf5.h5'
  text.write_text('hello')
  with pytest.raises(perceptual.VGGWeightsError, match='not_hdf5.h5'):
    perceptual.load_vgg_weights(str(text), 'vgg16')


def _tiny_layers(network):
  """Right layer names, dummy 1-element arrays (fails before shapes matter)."""
  return [(name, np.zeros((1, 1, 1, 1), np.float32), np.zeros(1, np.float32))
          for name in perceptual.conv_layer_names(network)]


def test_wrong_network_and_incomplete_files(vgg16_file, tmp_path):
  with pytest.raises(perceptual.VGGWeightsError,
                     match='notop.h5 is not a VGG19.*holds the VGG16'):
    perceptual.load_vgg_weights(vgg16_file[0], 'vgg19')
  path = tmp_path / 'vgg19_small.h5'
  _write_keras(path, _tiny_layers('vgg19'))
  with pytest.raises(perceptual.VGGWeightsError, match='vgg19_small.h5.*VGG19'):
    perceptual.load_vgg_weights(str(path), 'vgg16')
  path = tmp_path / 'incomplete.h5'
  _write_keras(path, _tiny_layers('vgg16')[:-1])
  with pytest.raises(
      perceptual.VGGWeightsError,
      match=r"incomplete.h5.*missing conv layers \['block5_conv3'\]"):
    perceptual.load_vgg_weights(str(path), 'vgg16')


def test_mismatched_shapes(tmp_path):
  layers = _tiny_layers('vgg16')
  # Theano ordering [out, in, 3, 3] for the first layer.
  layers[0] = ('block1_conv1', np.zeros((64, 3, 3, 3), np.float32),
               np.zeros(64, np.float32))
  path = tmp_path / 'vgg16_th.h5'
  _write_keras(path, layers)
  with pytest.raises(
      perceptual.VGGWeightsError,
      match=r'vgg16_th.h5: layer block1_conv1 .*\(3, 3, 3, 64\).*Theano'):
    perceptual.load_vgg_weights(str(path), 'vgg16')


def _loss_config(**overrides):
  config = ml_collections.ConfigDict(dict(
      perceptual='vgg16', vgg_weights='', perceptual_weight=1.0,
      pixel='none', pixel_weight=1.0))
  config.update(overrides)
  return config


def test_make_image_loss_config_errors():
  with pytest.raises(ValueError, match='config.loss.vgg_weights is empty.*'
                     'storage.googleapis.com.*vgg16_weights_tf_dim_ordering'):
    make_image_loss(_loss_config())
  with pytest.raises(ValueError,
                     match='config.loss.perceptual and config.loss.pixel'):
    make_image_loss(_loss_config(perceptual='none'))
  with pytest.raises(ValueError, match="config.loss.pixel='ssim3'"):
    make_image_loss(_loss_config(pixel='ssim3'))
  with pytest.raises(ValueError, match="config.loss.perceptual='vgg11'"):
    make_image_loss(_loss_config(perceptual='vgg11'))
  with pytest.raises(FileNotFoundError, match='nowhere.h5'):
    make_image_loss(_loss_config(vgg_weights='/nowhere.h5'))


def test_make_image_loss_pixel_only():
  fn, params = make_image_loss(
      _loss_config(perceptual='none', pixel='l1', pixel_weight=2.5))
  assert params == {}
  recon, target = _images(8), _images(9)
  loss, metrics = jax.jit(fn)(params, recon, target)
  want = 2.5 * np.abs(recon.astype(np.float64) - target).mean()
  np.testing.assert_allclose(loss, want, rtol=1e-6)
  np.testing.assert_allclose(metrics['pixel'], want / 2.5, rtol=1e-6)


def test_make_image_loss_perceptual_plus_pixel(vgg16_file):
  path, weights = vgg16_file
  fn, params = make_image_loss(
      _loss_config(vgg_weights=str(path), perceptual_weight=0.5, pixel='mse',
                   pixel_weight=3.0), size=None)
  recon, target = _images(10), _images(11)
  loss, metrics = jax.jit(fn)(params, recon, target)  # params: a jit argument
  mse = ((recon.astype(np.float64) - target)**2).mean()
  relu1_2 = np.abs(_np_relu1_2(recon, weights, 'caffe')
                   - _np_relu1_2(target, weights, 'caffe')).mean()
  np.testing.assert_allclose(metrics['pixel'], mse, rtol=1e-5)
  np.testing.assert_allclose(metrics['perceptual/relu1_2'], relu1_2, rtol=1e-4)
  np.testing.assert_allclose(
      loss, 0.5 * metrics['perceptual'] + 3.0 * mse, rtol=1e-5)
  assert set(metrics) == {'pixel', 'perceptual',
                          'perceptual/relu1_2', 'perceptual/relu2_2',
                          'perceptual/relu3_3', 'perceptual/relu4_3'}
  same, _ = jax.jit(fn)(params, recon, recon)
  assert float(same) == 0.0


def test_random_vgg_is_explicit_and_logged(caplog):
  with caplog.at_level(logging.WARNING):
    fn, params = make_image_loss(_loss_config(perceptual='vgg19'),
                                 random_vgg=True, size=None)
  assert 'RANDOM vgg19' in caplog.text
  shapes = perceptual.expected_shapes('vgg19')
  for name, (kernel_shape, bias_shape) in shapes.items():
    b, c = name[5], name[-1]
    if int(b) <= 4:
      assert params[f'block{b}'][f'conv{c}']['kernel'].shape == kernel_shape
      assert params[f'block{b}'][f'conv{c}']['bias'].shape == bias_shape
  loss, _ = jax.jit(fn)(params, _images(12), _images(13))
  assert float(loss) > 0


def _np_resize_bilinear(x, size):
  """Half-pixel bilinear resize [B, H, W, C] -> [B, size, size, C], float64, no antialias."""
  def axis_weights(n_in, n_out):
    src = np.clip((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0, n_in - 1)
    lo = np.floor(src).astype(int)
    hi = np.minimum(lo + 1, n_in - 1)
    w = np.zeros((n_out, n_in))
    w[np.arange(n_out), lo] += 1 - (src - lo)
    w[np.arange(n_out), hi] += src - lo
    return w
  rows, cols = axis_weights(x.shape[1], size), axis_weights(x.shape[2], size)
  return np.einsum('ih,bhwc,jw->bijc', rows, x.astype(np.float64), cols)


def _np_vgg_features(x, weights, network):
  """The 4 compared ReLU maps of blocks 1-4, float64 (pool 2x2 before blocks 2-4)."""
  features = []
  for b, n in enumerate(CONVS[network][:4]):
    if b:
      h, w = x.shape[1] // 2, x.shape[2] // 2
      x = x[:, :2 * h, :2 * w].reshape(x.shape[0], h, 2, w, 2, -1).max(axis=(2, 4))
    for c in range(n):
      x = _np_conv_relu(x, *weights[f'block{b + 1}_conv{c + 1}'])
    features.append(x)
  return features


def test_perceptual_loss_all_layers_and_resize_match_numpy(vgg16_file, vgg16_params):
  recon, target = _images(5, (2, 6, 6, 3)), _images(6, (2, 6, 6, 3))
  weights = vgg16_file[1]

  def np_features(images):
    x = _np_resize_bilinear((images.astype(np.float64) + 1) / 2, 8)
    x = x[..., ::-1] * 255 - np.array([103.939, 116.779, 123.68])
    return _np_vgg_features(x, weights, 'vgg16')

  want = [np.abs(r - t).mean() for r, t in zip(np_features(recon), np_features(target))]
  loss, per_layer = jax.jit(functools.partial(
      perceptual.perceptual_loss, network='vgg16', size=8))(vgg16_params, recon, target)
  np.testing.assert_allclose(per_layer, want, rtol=2e-4)
  np.testing.assert_allclose(loss, np.sum(want), rtol=2e-4)
