"""Simplified Human3.6M (Zhang et al. 2018 layout), the paper's main benchmark.

  python -m ppl_jax.main --config=configs/h36m.py --config.data.root=/data/h36m \
      --config.loss.vgg_weights=/path/vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5 \
      --workdir=workdir/h36m
Arguments after a colon:
  size=256 | 128        paper 256 (PPL 2.56), release 128 (PPL 1.92)
  variant=1..11 | name  Table 3 prior variant (ppl_jax.config.TABLE3_VARIANTS,
                        VARIANT_NAMES; default = column 11, prior from memory)
  release=true          the PyTorch release's settings: VGG16, lr 1e-4 (W: 512x), 20k
                        steps, thick 7.5e-5, masked-self context (16 x 16 blocks, each
                        dropped with p 0.8), boundary loss averaged over x and y, no L_l
  tiny=true             a few-second smoke run on the synthetic data
"""

from ppl_jax import config as config_lib


def get_config(arg=None):
  arg = config_lib.parse_arg(arg, size=256, variant='default', release=False, tiny=False)
  config = config_lib.default_config()
  config.data.name = 'h36m'
  config.data.image_size = arg.size
  config.data.random_flip = True
  config.data.num_workers = 2
  config.model.num_parts = 16
  config.model.prior_template = 'human16'
  config_lib.apply_prior_variant(config, arg.variant)
  config.loss.perceptual = 'vgg19'
  config.optim.learning_rate = 1e-3
  config.batch_size = 64
  # Paper: 50 epochs of the ~6 training subjects' frames.
  config.num_train_steps = 50_000
  if arg.release:
    config.loss.perceptual = 'vgg16'
    config.model.thick = 7.5e-5
    config.model.context = 'masked_self'
    config.optim.learning_rate = 1e-4
    config.optim.connectivity_lr_multiplier = 512.0   # the release's W step, 512 * 1e-4
    config.loss.boundary_weight = 0.5   # the release averages over x and y
    config.loss.link_weight = 0.0       # off in the release
    config.num_train_steps = 20_000
  if arg.tiny:
    config.data.name = 'synthetic'
    config_lib.make_tiny(config)
  return config
