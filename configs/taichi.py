"""Taichi (motion-cosegmentation / AutoLink layout), 256 px, G = 18 joints.

  python -m ppl_jax.main --config=configs/taichi.py --config.data.root=/data/taichi \
      --config.loss.vgg_weights=/path/vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5 \
      --workdir=workdir/taichi
Arguments: variant=1..11 | name (Table 3 prior variant), tiny=true (smoke run on
synthetic data). Predefined priors need a 16-point template ('human16').
"""

from ppl_jax import config as config_lib


def get_config(arg=None):
  arg = config_lib.parse_arg(arg, variant='default', tiny=False)
  config = config_lib.default_config()
  config.data.name = 'taichi'
  config.data.image_size = 256
  config.data.num_workers = 2
  config.model.num_parts = 16
  config.model.prior_template = 'human16'
  config_lib.apply_prior_variant(config, arg.variant)
  config.loss.perceptual = 'vgg19'
  config.batch_size = 64
  config.num_train_steps = 20_000
  if arg.tiny:
    config.data.name = 'synthetic'
    config_lib.make_tiny(config)
  return config
