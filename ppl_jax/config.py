"""The configuration schema: every field ppl_jax reads, with the paper's defaults.

Config files under `configs/` start from `default_config()` and override fields;
`validate(config)` runs before anything is compiled and names the offending field.

Coordinates everywhere are (x, y) in [-1, 1], x along the image width, with the
centre of pixel column c at x = -1 + (2c + 1) / W (the half-pixel convention of
`jax.image.resize`). Images are float32 NHWC in [-1, 1].
"""

import importlib.util
import os
import re
from typing import Any, Optional

import ml_collections

DATASETS = ('synthetic', 'h36m', 'taichi', 'custom')
CONTEXTS = ('reference_frame', 'masked_self')
AFFINE_ANCHORS = ('identity', 'soft_argmax')
KEYPOINT_PRIORS = ('memory', 'predefined', 'random')
CONNECTIVITY_PRIORS = ('random', 'predefined')
PERCEPTUAL_LOSSES = ('vgg19', 'vgg16', 'none')
PIXEL_LOSSES = ('none', 'l1', 'mse', 'ssim', 'l1_ssim')
OPTIMIZERS = ('adam', 'adamw')
SCHEDULES = ('constant', 'cosine', 'warmup_cosine')
DTYPES = ('float32', 'bfloat16')

# Table 3 of the paper (Human3.6M prior ablation), one entry per column:
# (keypoint_prior, keypoint_prior_trainable, connectivity_prior,
#  connectivity_trainable). Column 11 is the default PPL (keypoint prior from
# the memory, which has no trainable flag of its own).
TABLE3_VARIANTS = {
    1: ('predefined', True, 'predefined', True),
    2: ('predefined', True, 'predefined', False),
    3: ('predefined', False, 'predefined', True),
    4: ('predefined', False, 'predefined', False),
    5: ('predefined', True, 'random', True),
    6: ('predefined', False, 'random', True),
    7: ('random', True, 'predefined', True),
    8: ('random', False, 'predefined', True),
    9: ('random', True, 'random', True),
    10: ('random', False, 'random', True),
    11: ('memory', False, 'random', True),
}
# Readable names for the columns: <keypoint>_<connectivity>, each 'pre' or
# 'rand' (or 'mem') followed by 'train' or 'frozen'.
VARIANT_NAMES = {
    'default': 11,
    'pre_train-pre_train': 1,
    'pre_train-pre_frozen': 2,
    'pre_frozen-pre_train': 3,
    'pre_frozen-pre_frozen': 4,
    'pre_train-rand_train': 5,
    'pre_frozen-rand_train': 6,
    'rand_train-pre_train': 7,
    'rand_frozen-pre_train': 8,
    'rand_train-rand_train': 9,
    'rand_frozen-rand_train': 10,
    'mem-rand_train': 11,
}


def default_config() -> ml_collections.ConfigDict:
  """The paper's setting (Human3.6M-like, 256 px); config files override it."""
  config = ml_collections.ConfigDict()
  config.seed = 0

  # --- data -------------------------------------------------------------
  config.data = ml_collections.ConfigDict()
  config.data.name = 'synthetic'      # synthetic | h36m | taichi | custom
  config.data.image_size = 256        # square side the pipeline resizes to
  config.data.root = ''               # raw dataset folder (h36m, taichi, custom)
  config.data.data_dir = ''           # prepared TFDS/ArrayRecord dir ('' = read raw)
  config.data.labels = ''             # optional DeepLabCut CollectedData csv (custom)
  config.data.min_frame_gap = 1       # |index(I) - index(I_ref)| >= this
  config.data.max_frame_gap = 0       # 0 = no upper bound
  config.data.random_flip = False     # horizontal flip of a training pair (H36M)
  config.data.num_workers = 0         # grain worker processes (0 = in process)
  config.data.prefetch_buffer_size = 2
  config.data.on_bad_video = 'error'  # error | warn (skip and count)
  config.data.video_cache_frames = 16  # decoded frames kept per video file (custom videos)
  # Training decodes each video once into memory at image_size (input_pipeline.ResizedFrames)
  # when all of them fit in this many bytes (per grain worker); 0: decode on every read.
  config.data.frame_cache_bytes = 0
  # Foreground masks for loss.foreground_weight and loss.on_foreground_weight:
  # |I - median background| > threshold (max over channels, [0, 1] units); the median is
  # over background_frames frames a video.
  config.data.foreground_threshold = 0.1
  config.data.background_frames = 32
  config.data.synthetic = ml_collections.ConfigDict()
  config.data.synthetic.kind = 'humanoid'       # humanoid | quadruped
  config.data.synthetic.num_train_videos = 64
  config.data.synthetic.num_test_videos = 8
  config.data.synthetic.frames_per_video = 64
  config.data.synthetic.render_size = 128
  config.data.synthetic.seed = 0      # the videos' seed (config.seed seeds the training only)

  # --- model ------------------------------------------------------------
  config.model = ml_collections.ConfigDict()
  config.model.num_parts = 16         # N keypoints
  config.model.thick = 5e-4           # link heatmap width (paper sigma^2)
  # Ours, off by default: > 0 adds a second link map of this width with its own W_wide
  # (logits ~ connectivity_init_std * randn + wide_connectivity_init_mean); S = max of both.
  config.model.wide_thick = 0.0
  config.model.wide_connectivity_init_mean = -4.0
  config.model.context = 'reference_frame'  # reference_frame | masked_self
  config.model.mask_grid = 16         # masked_self: blocks per side (release `block=16`)
  config.model.mask_ratio = 0.8       # masked_self: probability a block is zeroed
  config.model.mask_sampling = 'bernoulli'  # each block independently (release) | 'exact' count
  config.model.encoder_channels = (64, 128, 256, 512)
  config.model.encoder_out_channels = 128
  config.model.heatmap_stride = 4     # keypoint heatmaps at 1/stride of the image (release: 4)
  config.model.decoder_channels = (64, 128, 256, 512, 512)
  config.model.embed_dim = 128        # prior-point embedding / affine-head width
  config.model.point_embed_dim = 256  # pooled per-keypoint feature width
  config.model.pool_coordinates = True  # heatmaps also pool (x, y): soft-argmax to the head
  config.model.affine_init_std = 0.0  # std of the affine head's last kernel (0: exact identity)
  config.model.affine_anchor = 'identity'  # identity | soft_argmax (Theta's translation starts at c_i - T_i)
  config.model.memory_banks = 34      # m
  config.model.memory_tokens = 16     # k
  config.model.memory_dim = 512       # d
  config.model.memory_decay = 0.9     # EMA decay of the codebook
  config.model.memory_eps = 1e-5      # Laplace smoothing
  # > 0: a token whose EMA count falls below this restarts at a badly quantised batch token
  # (models/memory.py); 0: never (the paper's memory).
  config.model.memory_reseed_below = 0.0
  config.model.mixer_enc_blocks = 4
  config.model.mixer_dec_blocks = 1
  config.model.mixer_dec_dim = 32
  # Table 3 prior variants.
  config.model.keypoint_prior = 'memory'      # memory | predefined | random
  config.model.keypoint_prior_trainable = True  # only for predefined | random
  config.model.connectivity_prior = 'random'  # random | predefined
  config.model.connectivity_trainable = True
  config.model.connectivity_init_mean = -4.0  # 'random' W logits ~ mean + std * randn (release)
  config.model.connectivity_init_std = 1.0
  config.model.prior_template = 'human16'     # template for predefined priors
  config.model.dtype = 'float32'              # compute dtype: float32 | bfloat16
  # Rematerialisation (recompute in the backward pass instead of storing): encoder residual
  # blocks, decoder levels, VGG blocks. Same values, less accelerator memory, ~1.3x the FLOPs.
  config.model.remat_encoder = False
  config.model.remat_decoder = False
  config.model.remat_perceptual = False

  # --- losses -----------------------------------------------------------
  config.loss = ml_collections.ConfigDict()
  config.loss.perceptual = 'vgg19'    # vgg19 (paper) | vgg16 (release) | none
  config.loss.vgg_weights = ''        # Keras .h5 'notop' weights file
  config.loss.perceptual_weight = 1.0
  config.loss.pixel = 'none'          # none | l1 | mse | ssim | l1_ssim
  config.loss.pixel_weight = 1.0
  config.loss.boundary_weight = 1.0   # paper eq. 5 sums over x and y; the release's mean is 0.5
  config.loss.link_weight = 1.0       # paper eq. 5 ("all the four losses"); the release: 0
  config.loss.keypoint_recon_weight = 100.0  # release: 100 * MSE on points
  config.loss.commitment_weight = 1.0
  # Ours, off in the paper's method: pull each foreground pixel's nearest keypoint towards
  # it (k-means on the moving figure, objective.foreground_loss), weight falling linearly to
  # 0 at foreground_anneal_steps (0: constant).
  config.loss.foreground_weight = 0.0
  config.loss.foreground_anneal_steps = 0
  # Ours, off in the paper's method: pull every keypoint onto the foreground (the other half
  # of the chamfer distance, objective.on_foreground_loss); constant weight.
  config.loss.on_foreground_weight = 0.0
  # Ours, off in the paper's method: push apart keypoints closer than separation_margin
  # ([-1, 1] units; 0.094 = 3 px at 64 px), objective.separation_loss.
  config.loss.separation_weight = 0.0
  config.loss.separation_margin = 0.094
  # Ours, off in the paper's method: W-weighted squared link lengths (objective.spring_loss),
  # so that a chain through a middle joint is cheaper than one link skipping it.
  config.loss.spring_weight = 0.0
  # Ours, off in the paper's method: keypoints of a warped copy of I (rotation within
  # +-equivariance_degrees, scale exp(+-equivariance_log_scale), shift +-equivariance_shift
  # in [-1, 1] units) equal the warped keypoints (objective.equivariance_loss); one more
  # encoder pass per step.
  config.loss.equivariance_weight = 0.0
  config.loss.equivariance_degrees = 15.0
  config.loss.equivariance_log_scale = 0.1
  config.loss.equivariance_shift = 0.1
  # Probability that the warped copy is also contrast-inverted (I -> -I in [-1, 1]): its
  # keypoints must not depend on whether the figure is lighter or darker than the scene.
  config.loss.equivariance_invert_prob = 0.0
  # Probability that the warped copy is also mirrored left-right: for side views whose
  # figures face either way, a keypoint must follow the same body part whichever way the
  # figure faces. (Not for front views: it asks a keypoint on the left wrist to sit on the
  # mirrored frame's right-looking wrist.) On the synthetic quadruped at 0.5 the keypoints
  # gathered on the body's symmetry axis, where a mirror maps each near itself, with or
  # without the separation term (benchmarks/README.md, "Quadruped"): off everywhere.
  config.loss.equivariance_flip_prob = 0.0

  # --- optimisation -----------------------------------------------------
  config.optim = ml_collections.ConfigDict()
  config.optim.optimizer = 'adam'     # adam | adamw
  config.optim.learning_rate = 1e-3
  config.optim.weight_decay = 0.0     # adamw only
  config.optim.eps = 1e-8             # Adam's epsilon
  # W's logits step lr * multiplier: 1e-3 * 51.2 = the release's 1e-4 * 512 (it stores
  # logits / 512 and multiplies by 512 inside the softplus). 512 at the paper's lr 1e-3 made
  # W's logits move 10x faster than the release's, and W collapsed.
  config.optim.connectivity_lr_multiplier = 51.2
  # Ours, 0 in the paper's method: W stays at its initial value before this step (the
  # keypoints settle first; Adam's moments still see W's gradients).
  config.optim.connectivity_start_step = 0
  config.optim.grad_clip_norm = 0.0   # 0 = no clipping
  config.optim.schedule = 'constant'  # constant | cosine | warmup_cosine
  config.optim.warmup_steps = 0

  # --- training loop ----------------------------------------------------
  config.batch_size = 64              # global batch
  config.num_train_steps = 20_000
  config.log_every_steps = 50
  config.image_summary_every_steps = 1000
  config.checkpoint_every_steps = 1000
  config.keep_checkpoints = 3
  config.eval_at_end = True
  config.eval_batch_size = 64
  config.eval_max_batches = 0         # 0 = the whole evaluation split
  config.checkpoint_async = True      # orbax writes in a background thread

  # --- sharding ---------------------------------------------------------
  # One mesh over all devices with the single axis 'data'; the global batch is
  # split over it. Parameters are replicated unless a rule below matches:
  # (regex over the '/'-joined parameter path, PartitionSpec as a tuple of mesh
  # axis names or None per dimension), e.g. (('decoder/.*/kernel', (None, None,
  # None, 'data')),) shards the last kernel axis over 'data' (FSDP style).
  config.sharding = ml_collections.ConfigDict()
  config.sharding.param_rules = ()
  return config


def load_config_file(path_and_arg: str) -> ml_collections.ConfigDict:
  """`get_config(arg)` of a config file given as 'path/to/config.py[:arg]', the form
  `--config=` takes (for notebooks and scripts; the configs folder is not a package)."""
  path, _, arg = path_and_arg.partition(':')
  if not os.path.isfile(path):
    raise FileNotFoundError(f'Config file {path!r} not found (cwd: {os.getcwd()}).')
  spec = importlib.util.spec_from_file_location(
      '_ppl_config_' + re.sub(r'\W', '_', os.path.basename(path)[:-3]), path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg or None)


def parse_arg(arg: Optional[str], **defaults: Any) -> ml_collections.ConfigDict:
  """Parses a config-file argument 'key=value,key2=value2' (big_vision style).

  Every key must appear in `defaults`; values are converted to the type of the
  default (bools accept true/false/1/0; a bare 'key' means key=True).
  """
  result = ml_collections.ConfigDict(defaults)
  if not arg:
    return result
  for item in arg.split(','):
    item = item.strip()
    if not item:
      continue
    key, _, value = item.partition('=')
    key = key.strip()
    if key not in defaults:
      raise ValueError(
          f'Unknown config argument {key!r} in {arg!r}; known: {sorted(defaults)}.')
    default = defaults[key]
    if not _:
      value = 'true'
    value = value.strip()
    if isinstance(default, bool):
      if value.lower() not in ('true', 'false', '1', '0'):
        raise ValueError(f'Config argument {key}={value!r} must be true or false.')
      result[key] = value.lower() in ('true', '1')
    elif isinstance(default, int):
      result[key] = int(value)
    elif isinstance(default, float):
      result[key] = float(value)
    else:
      result[key] = value
  return result


def apply_prior_variant(config: ml_collections.ConfigDict, variant) -> None:
  """Sets the four prior fields to column `variant` of the paper's Table 3.

  `variant` is a column number 1-11 (int or digit string) or a name of
  `VARIANT_NAMES` such as 'pre_frozen-pre_frozen' (column 4).
  """
  key = variant
  if isinstance(variant, str):
    key = int(variant) if variant.isdigit() else VARIANT_NAMES.get(variant)
  if key not in TABLE3_VARIANTS:
    raise ValueError(
        f'Unknown prior variant {variant!r}: use a Table 3 column 1-11 or one '
        f'of {sorted(VARIANT_NAMES)}.')
  (config.model.keypoint_prior, config.model.keypoint_prior_trainable,
   config.model.connectivity_prior,
   config.model.connectivity_trainable) = TABLE3_VARIANTS[key]


def make_tiny(config: ml_collections.ConfigDict) -> None:
  """Shrinks a config in place to a few-second CPU run (tests, smoke runs)."""
  config.data.image_size = 32
  config.data.synthetic.num_train_videos = 4
  config.data.synthetic.num_test_videos = 2
  config.data.synthetic.frames_per_video = 8
  config.data.synthetic.render_size = 64  # the synthetic renderer's minimum
  config.data.num_workers = 0
  config.model.mask_grid = 4
  config.model.encoder_channels = (4, 8, 8, 8)
  config.model.encoder_out_channels = 8
  config.model.decoder_channels = (4, 8, 8, 8, 8)
  config.model.embed_dim = 8
  config.model.point_embed_dim = 8
  config.model.memory_banks = 4
  config.model.memory_tokens = 4
  config.model.memory_dim = 8
  config.model.mixer_enc_blocks = 1
  config.model.mixer_dec_blocks = 1
  config.model.mixer_dec_dim = 8
  config.loss.perceptual = 'none'
  config.loss.pixel = 'l1'
  config.batch_size = 4
  config.eval_batch_size = 4
  config.eval_max_batches = 2
  config.num_train_steps = 3
  config.log_every_steps = 1
  config.image_summary_every_steps = 0
  config.checkpoint_every_steps = 2


def use_cpu_sized_model(config: ml_collections.ConfigDict) -> None:
  """Small channels and memory that train in minutes on a 2-core CPU (the synthetic
  default's model; 64 px images), with a pixel loss (no VGG weights needed).

  Also the settings under which such short runs (~1k steps of batch 16) learn at all
  on the synthetic benchmark. With the paper's (identity-anchored affine head, thin
  links, release W init and lr) W collapsed within a few hundred steps, the decoder
  ignored S (same image loss with W = 0) and every keypoint sat on the torso: matched
  error 23.7 after 1200 steps. In 600-step runs, wider links alone gave 22.5, adding
  the anchor 21.8 (one link took over), a 64x W lr 20.6, and all of the below 15.8:
  - affine_anchor='soft_argmax': T'_i starts at heatmap i's soft-argmax, a path by
    which a keypoint can jump to any part of the image (AutoLink's detector);
  - thick=5e-3 (1/e half-width ~2.3 px at 64 px): wider than the paper's 5e-4, a basin for
    each limb; 1e-2 (~3.2 px, twice an arm's half-width) let a straight shoulder-wrist link
    cover a bent arm, so no keypoint went to an elbow (seeds 0-4: 0.59 / 0.75 / 0.67 / 0.81 /
    0.58x the mean pose's matched error, against 0.49 / 0.64 / 0.63 / 0.66 / 0.48x at 5e-3;
    3e-3 on seeds 0 / 2: 0.45 / 0.68x; benchmarks/README.md, "Link width");
  - W logits ~ -2 + 0.1 randn (w ~ 0.13, nearly equal) at 64x (not 512x) the base lr:
    no link dominates from the start and W does not collapse before S is useful.
  Whether a run finds both arms still depends on the seed (RESULTS.md). Knobs that did not
  make configs/synthetic.py robust (1500 steps, matched error on seeds 0 / 1, where it gives
  5.98 / 15.86): wide links (thick=4e-2) for the first 500 steps, then 1e-2: 18.4 / 11.4;
  thick=4e-2 throughout: 12.6 on seed 1; W lr 8x: no keypoint on an arm at step 500 on seed 0
  (64x: both arms); W lr 256x: most links gone by step 500 on seed 1; the release's mask grid
  (16 x 16, 4 px blocks at 64 px): 17.56 on seed 1.
  Part discovery (benchmarks/README.md, "Part discovery"; ours, not the paper's):
  - the foreground loss (weight 1, annealed to 0 at step 750): keypoints start on the figure;
  - equivariance (weight 10) with half the warped copies contrast-inverted: one keypoint
    identity for figures lighter and darker than their scene, the cause of the runs that
    failed on seed 2 (1.67x the mean pose's matched error without the inversion).
  """
  m = config.model
  m.affine_anchor = 'soft_argmax'
  m.thick = 5e-3
  m.connectivity_init_mean = -2.0
  m.connectivity_init_std = 0.1
  config.optim.connectivity_lr_multiplier = 64.0
  m.encoder_channels = (16, 32, 64, 64)
  m.encoder_out_channels = 32
  m.decoder_channels = (16, 32, 64, 64, 64)
  m.embed_dim = 32
  m.point_embed_dim = 64
  m.memory_banks = 16
  m.memory_tokens = 8
  m.memory_dim = 64
  m.mixer_enc_blocks = 2
  m.mixer_dec_dim = 32
  config.loss.perceptual = 'none'
  config.loss.pixel = 'l1_ssim'
  config.loss.link_weight = 0.0   # the release's: L_l's gradient only lowers W
  config.loss.foreground_weight = 1.0
  config.loss.foreground_anneal_steps = 750
  config.loss.equivariance_weight = 10.0
  config.loss.equivariance_invert_prob = 0.5
  config.optim.learning_rate = 1e-3


def _choice(config, path: str, choices) -> None:
  value = _get(config, path)
  if value not in choices:
    raise ValueError(f'config.{path} = {value!r} is not one of {choices}.')


def _get(config, path: str):
  node = config
  for part in path.split('.'):
    node = node[part]
  return node


def _check(ok: bool, path: str, value, requirement: str) -> None:
  if not ok:
    raise ValueError(f'config.{path} = {value!r}: {requirement}.')


def _positive(config, *paths: str, allow_zero: bool = False) -> None:
  for path in paths:
    value = _get(config, path)
    bad = (not isinstance(value, (int, float)) or isinstance(value, bool)
           or value < 0 or (value == 0 and not allow_zero))
    _check(not bad, path, value,
           'must be a number ' + ('>= 0' if allow_zero else '> 0'))


def validate(config: ml_collections.ConfigDict, *,
             num_devices: Optional[int] = None,
             num_processes: Optional[int] = None) -> None:
  """Raises ValueError naming the field if `config` is invalid or contradictory.

  Runs before anything is built or compiled. `num_devices` / `num_processes`
  default to the running JAX's global device and process counts.
  """
  # Data.
  _choice(config, 'data.name', DATASETS)
  _positive(config, 'data.image_size', 'data.min_frame_gap',
            'eval_batch_size', 'batch_size', 'num_train_steps',
            'log_every_steps', 'keep_checkpoints')
  _positive(config, 'data.max_frame_gap', 'data.num_workers',
            'data.prefetch_buffer_size', 'image_summary_every_steps',
            'checkpoint_every_steps', 'eval_max_batches', allow_zero=True)
  size = config.data.image_size
  _check(size % 16 == 0, 'data.image_size', size,
         'must be a multiple of 16 (the encoder and U-Net downsample by 16)')
  gap, max_gap = config.data.min_frame_gap, config.data.max_frame_gap
  _check(max_gap == 0 or max_gap >= gap, 'data.max_frame_gap', max_gap,
         f'must be 0 (no bound) or >= data.min_frame_gap = {gap}')
  _choice(config, 'data.on_bad_video', ('error', 'warn'))
  _positive(config, 'data.video_cache_frames', 'data.background_frames')
  _positive(config, 'data.frame_cache_bytes', allow_zero=True)
  _check(0.0 < config.data.foreground_threshold < 1.0, 'data.foreground_threshold',
         config.data.foreground_threshold, 'must be in (0, 1)')
  if config.data.name == 'synthetic':
    _choice(config, 'data.synthetic.kind', ('humanoid', 'quadruped'))
    _positive(config, 'data.synthetic.num_train_videos',
              'data.synthetic.num_test_videos', 'data.synthetic.render_size')
    frames = config.data.synthetic.frames_per_video
    _check(isinstance(frames, int) and frames > gap,
           'data.synthetic.frames_per_video', frames,
           f'must exceed data.min_frame_gap = {gap} so a pair exists')
  elif not config.data.root and not config.data.data_dir:
    raise ValueError(
        f'config.data.root is empty: data.name={config.data.name!r} reads the '
        'dataset folder given by --config.data.root=/path (or prepared data '
        'via --config.data.data_dir=/path).')
  for path in ('data.root', 'data.data_dir', 'data.labels'):
    value = _get(config, path)
    _check(not value or os.path.exists(value), path, value,
           'does not exist')

  # Model.
  _positive(config, 'model.num_parts', 'model.thick', 'model.mask_grid',
            'model.encoder_out_channels', 'model.embed_dim',
            'model.point_embed_dim',
            'model.memory_banks', 'model.memory_tokens', 'model.memory_dim',
            'model.memory_eps', 'model.mixer_enc_blocks',
            'model.mixer_dec_dim')
  _positive(config, 'model.mixer_dec_blocks', 'model.wide_thick', allow_zero=True)
  _check(config.model.num_parts >= 2, 'model.num_parts',
         config.model.num_parts, 'needs at least 2 keypoints to form a link')
  _choice(config, 'model.context', CONTEXTS)
  _choice(config, 'model.affine_anchor', AFFINE_ANCHORS)
  _check(config.model.affine_init_std >= 0, 'model.affine_init_std',
         config.model.affine_init_std, 'must be >= 0')
  if config.model.context == 'masked_self':
    _check(size % config.model.mask_grid == 0, 'model.mask_grid',
           config.model.mask_grid,
           f'must divide data.image_size = {size} (it is the number of blocks per side)')
    _choice(config, 'model.mask_sampling', ('bernoulli', 'exact'))
  ratio = config.model.mask_ratio
  _check(0.0 <= ratio <= 1.0, 'model.mask_ratio', ratio, 'must be in [0, 1]')
  _check(config.model.memory_reseed_below >= 0.0, 'model.memory_reseed_below',
         config.model.memory_reseed_below, 'must be >= 0 (0: no re-seeding)')
  decay = config.model.memory_decay
  _check(0.0 < decay < 1.0, 'model.memory_decay', decay, 'must be in (0, 1)')
  for path in ('model.encoder_channels', 'model.decoder_channels'):
    channels = _get(config, path)
    _check(len(channels) > 0 and all(
        isinstance(c, int) and c > 0 for c in channels), path, channels,
           'must be a non-empty tuple of positive ints')
  stride, levels = config.model.heatmap_stride, len(config.model.encoder_channels)
  _check(isinstance(stride, int) and stride >= 2 and not stride & (stride - 1)
         and stride < 2 ** levels, 'model.heatmap_stride', stride,
         f'must be a power of 2 from 2 to {2 ** (levels - 1)} (the encoder has {levels} '
         'levels, model.encoder_channels)')
  _choice(config, 'model.keypoint_prior', KEYPOINT_PRIORS)
  _choice(config, 'model.connectivity_prior', CONNECTIVITY_PRIORS)
  _choice(config, 'model.dtype', DTYPES)
  if 'predefined' in (config.model.keypoint_prior,
                      config.model.connectivity_prior):
    # Raises naming config.model.prior_template on an unknown name or a
    # template with another number of points than model.num_parts.
    from ppl_jax.models import priors  # pylint: disable=g-import-not-at-top
    priors.template(config.model.prior_template, config.model.num_parts)

  # Losses.
  _choice(config, 'loss.perceptual', PERCEPTUAL_LOSSES)
  _choice(config, 'loss.pixel', PIXEL_LOSSES)
  _positive(config, 'loss.perceptual_weight', 'loss.pixel_weight',
            'loss.boundary_weight', 'loss.link_weight',
            'loss.keypoint_recon_weight', 'loss.commitment_weight',
            'loss.foreground_weight', 'loss.foreground_anneal_steps',
            'loss.on_foreground_weight',
            'loss.separation_weight', 'loss.spring_weight', 'loss.equivariance_weight',
            'loss.equivariance_degrees', 'loss.equivariance_log_scale',
            'loss.equivariance_shift', allow_zero=True)
  _check(0.0 <= config.loss.equivariance_invert_prob <= 1.0, 'loss.equivariance_invert_prob',
         config.loss.equivariance_invert_prob, 'must be in [0, 1]')
  _check(0.0 <= config.loss.equivariance_flip_prob <= 1.0, 'loss.equivariance_flip_prob',
         config.loss.equivariance_flip_prob, 'must be in [0, 1]')
  _positive(config, 'loss.separation_margin')
  if config.loss.perceptual != 'none':
    weights = config.loss.vgg_weights
    if not weights:
      raise ValueError(
          f'config.loss.perceptual = {config.loss.perceptual!r} needs '
          'config.loss.vgg_weights: the path of the Keras '
          f'{config.loss.perceptual}_weights_tf_dim_ordering_tf_kernels_notop.h5 '
          "file (see README), or use --config.loss.perceptual=none with a "
          'pixel loss (--config.loss.pixel=l1_ssim).')
    _check(os.path.isfile(weights), 'loss.vgg_weights', weights,
           'is not a file')
  if config.loss.perceptual == 'none' and config.loss.pixel == 'none':
    raise ValueError(
        "config.loss.perceptual and config.loss.pixel are both 'none': the "
        'reconstruction needs an image loss.')

  # Optimisation.
  _choice(config, 'optim.optimizer', OPTIMIZERS)
  _choice(config, 'optim.schedule', SCHEDULES)
  _positive(config, 'optim.learning_rate', 'optim.eps',
            'optim.connectivity_lr_multiplier')
  _positive(config, 'optim.weight_decay', 'optim.grad_clip_norm',
            'optim.warmup_steps', 'optim.connectivity_start_step', allow_zero=True)
  _check(config.optim.warmup_steps < config.num_train_steps,
         'optim.warmup_steps', config.optim.warmup_steps,
         f'must be < num_train_steps = {config.num_train_steps}')

  # Batch versus devices and processes.
  if num_devices is None or num_processes is None:
    import jax  # pylint: disable=g-import-not-at-top
    num_devices = jax.device_count() if num_devices is None else num_devices
    num_processes = (jax.process_count() if num_processes is None
                     else num_processes)
  for path in ('batch_size', 'eval_batch_size'):
    batch = _get(config, path)
    _check(batch % num_devices == 0, path, batch,
           f'must be divisible by the {num_devices} devices')
    _check(batch % num_processes == 0, path, batch,
           f'must be divisible by the {num_processes} processes')

  # Sharding rules: (regex, spec) with spec entries None or 'data'.
  for i, rule in enumerate(config.sharding.param_rules):
    ok = (len(rule) == 2 and isinstance(rule[0], str)
          and all(a in (None, 'data') for a in rule[1]))
    _check(ok, f'sharding.param_rules[{i}]', rule,
           "must be (path_regex, (None | 'data', ...))")
    try:
      re.compile(rule[0])
    except re.error as e:
      raise ValueError(f'config.sharding.param_rules[{i}] = {rule!r}: bad regex '
                       f'({e}).') from e
