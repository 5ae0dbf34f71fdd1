"""The embedded synthetic benchmark (the default): trains in ~10 min on a 2-core CPU.

Procedurally rendered humanoids on static textured backgrounds (ground truth known
exactly), 64 px, a pixel loss (no VGG weights needed), small channels and memory.
Ends with the min-cost-flow matched error on held-out synthetic videos next to a
mean-pose baseline.

  python -m ppl_jax.main --config=configs/synthetic.py --workdir=workdir/synthetic
  --config=configs/synthetic.py:tiny             a few-second smoke run (tests)
  --config=configs/synthetic.py:kind=quadruped   four-legged figures, N=10
  --config=configs/synthetic.py:variant=4        a Table 3 prior variant
"""

from ppl_jax import config as config_lib


def get_config(arg=None):
  arg = config_lib.parse_arg(arg, tiny=False, kind='humanoid', variant='default',
                             size=64)
  config = config_lib.default_config()
  config.data.name = 'synthetic'
  config.data.image_size = arg.size
  config.data.synthetic.kind = arg.kind
  config.data.synthetic.num_train_videos = 64
  config.data.synthetic.num_test_videos = 8
  config.data.synthetic.frames_per_video = 32
  config.data.synthetic.render_size = arg.size
  config.data.min_frame_gap = 4

  config.model.num_parts = 10 if arg.kind == 'quadruped' else 16
  config.model.prior_template = 'quadruped10' if arg.kind == 'quadruped' else 'human16'
  config.model.thick = 1e-3
  config.model.encoder_channels = (16, 32, 64, 64)
  config.model.encoder_out_channels = 32
  config.model.decoder_channels = (16, 32, 64, 64, 64)
  config.model.embed_dim = 32
  config.model.point_embed_dim = 64
  config.model.memory_banks = 16
  config.model.memory_tokens = 8
  config.model.memory_dim = 64
  config.model.mixer_enc_blocks = 2
  config.model.mixer_dec_dim = 32
  config_lib.apply_prior_variant(config, arg.variant)

  config.loss.perceptual = 'none'
  config.loss.pixel = 'l1_ssim'

  config.optim.learning_rate = 1e-3
  config.batch_size = 16
  config.num_train_steps = 1200
  config.log_every_steps = 50
  config.image_summary_every_steps = 400
  config.checkpoint_every_steps = 400
  config.eval_batch_size = 32
  if arg.tiny:
    config_lib.make_tiny(config)
  return config
