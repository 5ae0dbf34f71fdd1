"""Config files, command-line overrides, Table 3 variants and validate()."""

import os

from absl import flags
import ml_collections
from ml_collections import config_flags
import pytest

from ppl_jax import config as config_lib

from conftest import load_config

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


@pytest.mark.parametrize('arg, parts', [('', 24), ('parts=16', 16), ('variant=1', 16),
                                        ('variant=9', 24), ('variant=5', 16),
                                        ('kind=quadruped', 10), ('kind=quadruped,parts=12', 12)])
def test_synthetic_number_of_keypoints(arg, parts):
  config = _load(f'configs/synthetic.py:{arg}' if arg else 'configs/synthetic.py')
  _valid(config)
  assert config.model.num_parts == parts


def test_synthetic_predefined_prior_with_other_parts_names_the_template():
  with pytest.raises(ValueError, match='prior_template'):
    _valid(_load('configs/synthetic.py:variant=1,parts=20'))


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



@pytest.mark.parametrize('arg, size, steps, perceptual', [
    ('', 128, 20_000, 'vgg19'),
    ('size=256', 256, 20_000, 'vgg19'),
    ('cpu=true', 64, 300, 'none'),
    ('cpu=true,size=128', 128, 400, 'none'),
])
def test_custom_videos_size_argument(arg, size, steps, perceptual):
  # The full run defaults to 128 px; cpu=true to 64 px, and size=128 is its 128 px option
  # with more steps (the docstring's ~15 min on 2 cores).
  config = _load(f'configs/custom_videos.py:{arg}' if arg else 'configs/custom_videos.py')
  assert config.data.image_size == size
  assert config.num_train_steps == steps
  assert config.loss.perceptual == perceptual


def test_custom_videos_negative_size_names_the_argument():
  with pytest.raises(Exception, match='size=-64 must be positive'):
    _load('configs/custom_videos.py:size=-64')

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
    ('model.memory_reseed_below', -1.0, 'config.model.memory_reseed_below'),
    ('model.encoder_channels', (4, -1), 'config.model.encoder_channels'),
    ('model.heatmap_stride', 3, 'config.model.heatmap_stride'),
    ('model.heatmap_stride', 1, 'config.model.heatmap_stride'),
    ('model.heatmap_stride', 2 ** 9, 'config.model.heatmap_stride'),
    ('loss.pixel', 'l2', 'config.loss.pixel'),
    ('loss.equivariance_flip_prob', 1.5, 'config.loss.equivariance_flip_prob'),
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


# Each default with its source: (config path, value, where it comes from).
PAPER_DEFAULTS = [
    ('optim.learning_rate', 1e-3, 'paper sec. A: "Adam optimizer with a learning rate of 10^{-3}"'),
    ('batch_size', 64, 'paper sec. A: "a batch size of 64"'),
    ('data.image_size', 256, 'paper sec. A: "all images are resized to 256x256"'),
    ('model.thick', 5e-4, 'paper sec. A: "link thickness sigma^2 = 5 x 10^{-4}"'),
    ('model.memory_banks', 34, 'paper sec. A: "34 memory banks"'),
    ('model.memory_tokens', 16, 'paper sec. A: "each of which contains 16 tokens"'),
    ('model.memory_dim', 512, 'paper sec. A: "of dimension 512"'),
    ('model.num_parts', 16, 'release train.py: --num_parts 16'),
    ('model.memory_decay', 0.9, 'release PoseMemory: self.decay = 0.9'),
    ('model.memory_eps', 1e-5, 'release PoseMemory: Laplace smoothing + 1e-5'),
    ('model.connectivity_init_mean', -4.0, 'release: (torch.randn(N, N) - 4) / sklr'),
    ('model.connectivity_init_std', 1.0, 'release: torch.randn'),
    # W's logit step: the release's 512 * 1e-4 at the paper's lr 1e-3 (config.py comment).
    ('optim.connectivity_lr_multiplier', 51.2, 'release: sklr 512 at learning_rate 1e-4'),
    ('model.mask_grid', 16, 'release train.py: --block 16 (blocks per side)'),
    ('model.mask_ratio', 0.8, 'release train.py: --missing 0.8'),
    ('model.mask_sampling', 'bernoulli', 'release: uniform_() > missing per block'),
    ('model.context', 'reference_frame', 'paper sec. 3.2: I_ref another frame of the video'),
    ('loss.perceptual', 'vgg19', 'paper: VGG19 perceptual loss'),
    ('loss.boundary_weight', 1.0, 'paper eq. 5 (sum over x, y); release weight 1'),
    ('loss.link_weight', 1.0, 'paper sec. 3.4: "jointly minimize all the four losses"'),
    ('loss.keypoint_recon_weight', 100.0, 'release: consistency = 100 * F.mse_loss'),
    ('loss.commitment_weight', 1.0, 'release: loss = loss + vq_loss (commitment MSE)'),
    ('loss.foreground_weight', 0.0, 'ours, not in the paper: off in the paper method'),
    ('model.keypoint_prior', 'memory', 'paper Table 3 column 11 (PPL)'),
]


@pytest.mark.parametrize('path,value,source', PAPER_DEFAULTS, ids=[p for p, _, _ in PAPER_DEFAULTS])
def test_paper_defaults_are_pinned(path, value, source):
  node = config_lib.default_config()
  for part in path.split('.'):
    node = node[part]
  assert node == value, f'config.{path} = {node!r}, but {source} gives {value!r}'


def test_release_config_follows_the_release():
  config = load_config('h36m', 'release=true')
  assert config.optim.learning_rate == 1e-4                  # --learning_rate 0.0001
  assert config.optim.connectivity_lr_multiplier == 512.0    # --sklr 512
  assert config.model.thick == 7.5e-5
  assert config.loss.boundary_weight == 0.5                  # .mean() over x and y
  assert config.loss.link_weight == 0.0                      # edge_reg_loss commented out
  assert config.model.context == 'masked_self'
  assert (config.model.mask_grid, config.model.mask_sampling) == (16, 'bernoulli')
  assert config.num_train_steps == 20_000                    # --max_steps 20000
