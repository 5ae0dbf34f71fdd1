"""A user's folder of videos of one category (e.g. the paper's YouTube dogs, N = 10).

  python -m ppl_jax.main --config=configs/custom_videos.py --config.data.root=/my/videos \
      --config.loss.vgg_weights=/path/vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5 \
      --workdir=workdir/dogs
The folder holds video files (mp4/avi/mov) or per-video frame folders; optional labels
for evaluation: --config.data.labels=CollectedData_x.csv (DeepLabCut layout).
Arguments: parts=10 (N), size (pixels; default 128, or 64 with cpu=true), variant=1..11 |
name (Table 3; predefined priors use 'quadruped10' for N = 10, else 'ring'), tiny=true
(smoke run on synthetic data), cpu=true (a CPU run: the synthetic default's small model
and pixel loss, no VGG weights, batch 16; at 64 px 300 steps, ~5 min on 2 cores; with
size=128 400 steps, 33 min two at a time, not yet timed alone), e.g. the mirror-mouse clip of the README:
  python -m ppl_jax.main --config=configs/custom_videos.py:cpu=true \
      --config.data.root=../shared/data/mirror-mouse/videos --workdir=workdir/mouse
"""

from ppl_jax import config as config_lib


def get_config(arg=None):
  arg = config_lib.parse_arg(arg, parts=10, size=0, variant='default', tiny=False,
                             cpu=False)
  if arg.size < 0:
    raise ValueError(f'configs/custom_videos.py: size={arg.size} must be positive (pixels), '
                     'or 0 for the default (128, or 64 with cpu=true).')
  size = arg.size or (64 if arg.cpu else 128)
  config = config_lib.default_config()
  config.data.name = 'custom'
  config.data.image_size = size
  config.data.num_workers = 2
  config.data.on_bad_video = 'warn'
  config.model.num_parts = arg.parts
  config.model.prior_template = 'quadruped10' if arg.parts == 10 else 'ring'
  config_lib.apply_prior_variant(config, arg.variant)
  config.loss.perceptual = 'vgg19'
  config.batch_size = 64
  config.num_train_steps = 20_000
  # Without labels there is nothing to evaluate: with --config.data.labels also
  # pass --config.eval_at_end=true.
  config.eval_at_end = False
  # Each video decoded once at training size (64 px: ~12 KiB a frame, 256 px: ~192 KiB).
  config.data.frame_cache_bytes = 4 * 2**30
  if arg.cpu:
    config.data.num_workers = 0
    config_lib.use_cpu_sized_model(config)
    config.batch_size = 16
    # A 128 px step costs ~4.5x a 64 px one (benchmarks/README.md, train_step.py).
    config.num_train_steps = 300 if size <= 64 else 400
    config.checkpoint_every_steps = 100
    config.image_summary_every_steps = 100
  if arg.tiny:
    config.data.name = 'synthetic'
    config_lib.make_tiny(config)
  return config
