"""Config files, command-line overrides, Table 3 variants and validate()."""

import os

from absl import flags
import ml_collections
from ml_collections import config_flags
import pytest

from ppl_jax import config as config_lib

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _load(spec, *overrides):
  """Parses --config=spec plus overrides exactly like ppl_jax.main does."""
  argv = ['prog', f'--config={os.path.join(REPO, spec)}', *overrides]
  flag_values = flags.FlagValues()
  config_flags.DEFINE_config_file('config', None, flag_values=flag_values,
                                  lock_config=True, sys_argv=argv)
  flag_values(argv)
  return flag_values.config


def _valid(config):
  config_lib.validate(config, num_devices=1, num_processes=1)


def test_synthetic_default_is_valid_and_cpu_sized():
  config = _load('configs/synthetic.py')
  _valid(config)
  assert config.data.name == 'synthetic'
  assert config.data.image_size == 64
  assert config.loss.perceptual == 'none' and config.loss.pixel != 'none'
  assert config.model.keypoint_prior == 'memory'


def test_overrides_and_arguments():
  config = _load('configs/synthetic.py:tiny', '--config.batch_size=8',
                 '--config.model.encoder_channels=(4,4,4,4)')
  assert config.batch_size == 8
  assert tuple(config.model.encoder_channels) == (4, 4, 4, 4)
  assert config.data.image_size == 32
  with pytest.raises(Exception, match='nonexistent'):
    _load('configs/synthetic.py', '--config.nonexistent=1')


@pytest.mark.parametrize('size', [256, 128])
def test_h36m_sizes_need_root_and_weights(size, tmp_path):
  config = _load(f'configs/h36m.py:size={size}')
  assert config.data.image_size == size
  with pytest.raises(ValueError, match='config.data.root'):
    _valid(config)
  weights = tmp_path / 'vgg19.h5'
  weights.write_bytes(b'')
  config = _load(f'configs/h36m.py:size={size}', f'--config.data.root={tmp_path}',
                 f'--config.loss.vgg_weights={weights}')
  _valid(config)


@pytest.mark.parametrize('spec', ['configs/taichi.py', 'configs/custom_videos.py'])
def test_real_data_configs(spec, tmp_path):
  weights = tmp_path / 'vgg19.h5'
  weights.write_bytes(b'')
  config = _load(spec, f'--config.data.root={tmp_path}',
                 f'--config.loss.vgg_weights={weights}')
  _valid(config)
  if 'custom' in spec:
    assert config.model.num_parts == 10  # the paper's dogs
  for tiny in ('tiny',):
    _valid(_load(f'{spec}:{tiny}'))


# Table 3 of the paper as printed: initialisation and trainability per column.
_TABLE3 = {
    'kp_init': 'Pre Pre Pre Pre Pre Pre Rand Rand Rand Rand Mem'.split(),
    'kp_train': 'y y n n y n y n y n n'.split(),
    'conn_init': 'Pre Pre Pre Pre Rand Rand Pre Pre Rand Rand Rand'.split(),
    'conn_train': 'y n y n y y y y y y y'.split(),
}
_NAMES = {'Pre': 'predefined', 'Rand': 'random', 'Mem': 'memory'}


@pytest.mark.parametrize('column', range(1, 12))
def test_table3_variants(column):
  config = _load(f'configs/h36m.py:variant={column}')
  i = column - 1
  assert config.model.keypoint_prior == _NAMES[_TABLE3['kp_init'][i]]
  assert config.model.connectivity_prior == _NAMES[_TABLE3['conn_init'][i]]
  assert config.model.connectivity_trainable == (_TABLE3['conn_train'][i] == 'y')
  if config.model.keypoint_prior != 'memory':
    assert config.model.keypoint_prior_trainable == (_TABLE3['kp_train'][i] == 'y')


def test_variant_names():
  config = _load('configs/h36m.py:variant=pre_frozen-pre_frozen')
  assert (config.model.keypoint_prior, config.model.keypoint_prior_trainable,
          config.model.connectivity_prior, config.model.connectivity_trainable) == (
              'predefined', False, 'predefined', False)
  with pytest.raises(ValueError, match='prior variant'):
    config_lib.apply_prior_variant(config_lib.default_config(), '12')


def _tiny():
  config = config_lib.default_config()
  config_lib.make_tiny(config)
  return config


@pytest.mark.parametrize('field,value,message', [
    ('data.name', 'mnist', 'config.data.name'),
    ('data.image_size', 40, 'config.data.image_size'),
    ('data.image_size', -32, 'config.data.image_size'),
    ('model.num_parts', 0, 'config.model.num_parts'),
    ('model.context', 'self', 'config.model.context'),
    ('model.keypoint_prior', 'learned', 'config.model.keypoint_prior'),
    ('model.memory_decay', 1.5, 'config.model.memory_decay'),
    ('model.encoder_channels', (4, -1), 'config.model.encoder_channels'),
    ('loss.pixel', 'l2', 'config.loss.pixel'),
    ('loss.perceptual', 'vgg19', 'config.loss.vgg_weights'),
    ('optim.optimizer', 'sgd', 'config.optim.optimizer'),
    ('optim.learning_rate', -1e-3, 'config.optim.learning_rate'),
    ('optim.warmup_steps', 10, 'config.optim.warmup_steps'),
    ('batch_size', 0, 'config.batch_size'),
    ('data.max_frame_gap', -1, 'config.data.max_frame_gap'),
    ('sharding.param_rules', (('.*', ('model',)),), 'config.sharding.param_rules'),
])
def test_validate_names_the_field(field, value, message):
  config = _tiny()
  node = config
  *parents, leaf = field.split('.')
  for p in parents:
    node = node[p]
  node[leaf] = value
  with pytest.raises(ValueError, match=message.replace('.', r'\.')):
    _valid(config)


def test_validate_contradictions():
  config = _tiny()
  config.loss.pixel = 'none'
  with pytest.raises(ValueError, match='both'):
    _valid(config)

  config = _tiny()
  config.batch_size = 6
  with pytest.raises(ValueError, match='config.batch_size.*4 devices'):
    config_lib.validate(config, num_devices=4, num_processes=1)
  with pytest.raises(ValueError, match='config.batch_size.*4 processes'):
    config_lib.validate(config, num_devices=1, num_processes=4)

  config = _tiny()
  config.model.num_parts = 10
  config.model.keypoint_prior = 'predefined'
  config.model.prior_template = 'human16'
  with pytest.raises(ValueError, match='prior_template'):
    _valid(config)
  config.model.prior_template = 'quadruped10'
  _valid(config)

  config = _tiny()
  config.loss.perceptual = 'vgg16'
  config.loss.vgg_weights = '/nonexistent/vgg16.h5'
  with pytest.raises(ValueError, match='config.loss.vgg_weights'):
    _valid(config)


def test_parse_arg():
  arg = config_lib.parse_arg('size=128, tiny,variant=4', size=256, tiny=False,
                             variant='default')
  assert arg == ml_collections.ConfigDict({'size': 128, 'tiny': True, 'variant': '4'})
  with pytest.raises(ValueError, match='Unknown config argument'):
    config_lib.parse_arg('sise=128', size=256)
