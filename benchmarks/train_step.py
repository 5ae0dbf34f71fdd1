r"""Train-step throughput with a roofline view, peak memory, link-heatmap share and pipeline headroom.

  python benchmarks/train_step.py                                    # synthetic model, B in {8, 64}
  python benchmarks/train_step.py --model=full --perceptual=vgg16 --random_vgg \
      --batch=8 --size=128 --steps=3 --breakdown --json=benchmarks/results/train_step_cpu_full.json
  python benchmarks/train_step.py --model=full --perceptual=vgg16 --random_vgg --batch=64 \
      --size=256 --remat=none,decoder,perceptual,both,encoder,all --mode=compile   # memory only

Every configuration (model x size x batch x dtype x remat) runs in a fresh subprocess, which
  1. times a large matmul (--matmul_size, f32 and bf16, median of --matmul_repeats, before and
     after the step) on the same device: the measured peak FLOP/s of this machine right now;
  2. compiles the jitted train step of `ppl_jax.train.create_train_setup` and reads XLA's own
     cost analysis (FLOPs, bytes accessed) and memory analysis of the compiled program
     (device memory = arguments + outputs - donated + scratch), and estimates the peak memory
     from the step's jaxpr as well (`jaxpr_peak_bytes`: follows the rematerialisation the
     program asks for, which XLA:CPU's own buffer assignment does not reflect);
  3. runs --warmup untimed and --steps timed steps on fixed random batches (median step time;
     the input pipeline is not part of it) and reports achieved FLOP/s = FLOPs / step_s and
     its fraction of the matmul peak of the step's dtype;
  4. times the link-heatmap renderer alone (forward + backward at the step's B, N, H, W) and
     reports its share of the step (and with --breakdown the encoder, the decoder and the
     image loss alone, forward + backward, with their FLOPs);
  5. measures the host input pipeline (`create_train_dataset` on the synthetic source at the
     same size and batch, --pipeline_workers workers) and reports its frames/s beside the
     step's, and the ratio (the issue asks for >= 2).
A "frame" is one training example (a frame I with its reference I_ref) in both rates.
--mode=compile stops after 2 (no timing), --mode=trace computes only the jaxpr estimate.

--model=synthetic is configs/synthetic.py (small channels); --model=full is
`ppl_jax.config.default_config()`'s model (release-size encoder 64-128-256-512, U-Net 64..512,
memory 34 x 16 x 512) on synthetic data at --size. The perceptual loss needs a weights file
(--vgg_weights) or --random_vgg, which builds the VGG with random weights: timing only; the
script says so loudly. --model=full --perceptual=none uses an L1 pixel loss.
"""

import copy
import json
import os
import resource
import statistics
import subprocess
import sys
import time

from absl import app
from absl import flags

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _REPO not in sys.path:
  sys.path.insert(0, _REPO)

# --remat name -> the config.model.remat_* switches it turns on.
REMAT = {'none': (), 'decoder': ('decoder',), 'perceptual': ('perceptual',),
         'both': ('decoder', 'perceptual'), 'encoder': ('encoder',),
         'all': ('encoder', 'decoder', 'perceptual')}

flags.DEFINE_enum('model', 'synthetic', ['synthetic', 'full'],
                  'synthetic: configs/synthetic.py sizes; full: default_config() sizes.')
flags.DEFINE_list('batch', ['8', '64'], 'Global batch sizes.')
flags.DEFINE_list('size', ['64', '128'], 'Image sides in pixels.')
flags.DEFINE_integer('num_parts', 0, 'N keypoints (0: the model\'s config, synthetic 24, full 16).')
flags.DEFINE_enum('perceptual', 'none', ['none', 'vgg16', 'vgg19'],
                  'Perceptual loss (needs --vgg_weights or --random_vgg). With '
                  '--model=synthetic it is added to the config\'s pixel loss.')
flags.DEFINE_string('vgg_weights', '', 'Keras .h5 VGG weights for --perceptual.')
flags.DEFINE_bool('random_vgg', False, 'Random-weight VGG for --perceptual (timing only).')
flags.DEFINE_list('dtype', ['float32'], 'Compute dtypes (float32, bfloat16).')
flags.DEFINE_list('remat', ['none'], 'Rematerialisation settings: ' + ', '.join(REMAT) + '.')
flags.DEFINE_integer('steps', 3, 'Timed steps per configuration (median reported).')
flags.DEFINE_integer('warmup', 1, 'Untimed steps after compilation.')
flags.DEFINE_integer('matmul_size', 0, 'Side of the peak-FLOP/s matmul (0: 2048 on CPU, '
                     '8192 on accelerators).')
flags.DEFINE_integer('matmul_repeats', 3, 'Timed matmuls per dtype, before and after the step.')
flags.DEFINE_integer('component_repeats', 3, 'Timed runs of the renderer / components.')
flags.DEFINE_bool('breakdown', False, 'Also time encoder, decoder and perceptual loss alone.')
flags.DEFINE_integer('pipeline_workers', 0, 'Grain workers for the pipeline measurement.')
flags.DEFINE_integer('pipeline_batches', 4, 'Timed pipeline batches (0: skip).')
flags.DEFINE_enum('mode', 'time', ['time', 'compile', 'trace'],
                  'time: everything; compile: FLOPs and memory of the compiled step, no '
                  'timing; trace: only the jaxpr memory estimate (no compilation).')
flags.DEFINE_string('json', '', 'Write the records to this JSON file.')
flags.DEFINE_bool('child', False, 'Internal: run one configuration and print JSON.')
FLAGS = flags.FLAGS

_GIB = 2**30


# ----------------------------------------------------------------------------------------
# Helpers (also used by tests/test_train_step_bench.py).

def build_config(model: str, batch: int, size: int, *, num_parts: int = 0,
                 perceptual: str = 'none', vgg_weights: str = '', random_vgg: bool = False,
                 dtype: str = 'float32', remat: str = 'none', tiny: bool = False):
  """The benchmarked config (validated; a random VGG needs no weights file)."""
  from ppl_jax import config as config_lib  # pylint: disable=g-import-not-at-top
  if model == 'synthetic':
    import importlib.util  # pylint: disable=g-import-not-at-top
    spec = importlib.util.spec_from_file_location(
        'synthetic_config', os.path.join(_REPO, 'configs', 'synthetic.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = module.get_config(f'size={size}')
  elif model == 'full':
    config = config_lib.default_config()
    config.data.name = 'synthetic'
    config.loss.pixel = 'l1' if perceptual == 'none' else 'none'
  else:
    raise ValueError(f'Unknown model {model!r}: synthetic or full.')
  if tiny:
    config_lib.make_tiny(config)
  config.data.image_size = size
  config.data.synthetic.render_size = max(size, 64)
  config.batch_size = batch
  config.model.num_parts = num_parts or config.model.num_parts
  config.model.dtype = dtype
  for part in ('decoder', 'perceptual', 'encoder'):
    field = f'remat_{part}'
    if part in REMAT[remat]:
      if field not in config.model:
        raise ValueError(f'--remat={remat}: this version has no config.model.{field}.')
      config.model[field] = True
    elif field in config.model:
      config.model[field] = False
  config.loss.perceptual = perceptual
  config.loss.vgg_weights = vgg_weights
  checked = copy.deepcopy(config)
  if random_vgg and perceptual != 'none':
    checked.loss.perceptual = 'none'  # a random VGG needs no weights file
    if checked.loss.pixel == 'none':
      checked.loss.pixel = 'l1'
  config_lib.validate(checked)
  return config


def abstract_step_args(setup, mesh, batch: int, size: int):
  """(state, batch, VGG params) of `setup.train_step` as shapes with the step's shardings."""
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from ppl_jax import sharding  # pylint: disable=g-import-not-at-top
  abstract_batch = {k: jax.ShapeDtypeStruct((batch, size, size, 3), jnp.float32,
                                            sharding=sharding.batch_sharding(mesh))
                    for k in ('image', 'reference')}
  abstract_vgg = jax.tree_util.tree_map(
      lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=a.sharding), setup.vgg_params)
  return setup.abstract_state, abstract_batch, abstract_vgg


def cost_summary(compiled) -> dict:
  """{'flops', 'bytes_accessed'} of a compiled program from XLA's cost analysis.

  `Compiled.cost_analysis()` returns a dict in recent jax and a list with one dict per
  program (or None where the backend has no cost model) in older ones.
  """
  analysis = compiled.cost_analysis()
  if isinstance(analysis, (list, tuple)):
    analysis = analysis[0] if analysis else None
  analysis = analysis or {}
  return {'flops': float(analysis.get('flops', 0.0)),
          'bytes_accessed': float(analysis.get('bytes accessed', 0.0))}


def memory_summary(compiled) -> dict:
  """Device memory of a compiled program (bytes) from its memory analysis.

  peak_memory_bytes = arguments + outputs - aliased (donated) outputs + temp: what the
  program holds on the device while it runs (XLA allocates its scratch, whose size is the
  peak of the buffer assignment's heap simulation, as one block). XLA's own
  `peak_memory_in_bytes` is kept as xla_peak_memory_bytes: on XLA:CPU it omits the scratch.
  """
  stats = compiled.memory_analysis()
  temp = int(stats.temp_size_in_bytes)
  argument = int(stats.argument_size_in_bytes)
  output = int(stats.output_size_in_bytes)
  alias = int(stats.alias_size_in_bytes)
  return {'peak_memory_bytes': temp + argument + output - alias, 'temp_bytes': temp,
          'argument_bytes': argument, 'output_bytes': output, 'alias_bytes': alias,
          'xla_peak_memory_bytes': int(getattr(stats, 'peak_memory_in_bytes', 0) or 0)}


_INLINED = ('jit', 'pjit', 'closed_call', 'core_call', 'remat', 'remat2', 'checkpoint',
            'custom_jvp_call', 'custom_vjp_call', 'custom_vjp_call_jaxpr')


def _aval_bytes(var) -> int:
  aval = getattr(var, 'aval', None)
  if not hasattr(aval, 'shape') or not hasattr(aval, 'dtype'):
    return 0
  size = 1
  for d in aval.shape:
    size *= int(d)
  return size * aval.dtype.itemsize


def _sub_jaxprs(eqn):
  """(jaxpr, consts) of every jaxpr in eqn.params."""
  found = []
  for value in eqn.params.values():
    for item in value if isinstance(value, (tuple, list)) else (value,):
      if hasattr(item, 'jaxpr') and hasattr(item, 'consts'):       # ClosedJaxpr
        found.append((item.jaxpr, list(item.consts)))
      elif hasattr(item, 'eqns') and hasattr(item, 'invars'):       # Jaxpr
        found.append((item, []))
  return found


def _jaxpr_peak(jaxpr, consts_bytes: int = 0) -> int:
  """Peak live bytes of a jaxpr run eqn by eqn in program order (see jaxpr_peak_bytes)."""
  from jax.extend import core as jex_core  # pylint: disable=g-import-not-at-top
  sizes, events, ids = {}, [], {}

  def new_id(var):
    ident = len(sizes)
    sizes[ident] = _aval_bytes(var)
    return ident

  def walk(jaxpr, env):
    for eqn in jaxpr.eqns:
      ins = [env[v] for v in eqn.invars
             if not isinstance(v, jex_core.Literal) and v in env]
      subs = _sub_jaxprs(eqn)
      if eqn.primitive.name in _INLINED and len(subs) == 1:
        inner, consts = subs[0]
        inner_env = {v: new_id(v) for v in inner.constvars}
        for inner_var, outer_var in zip(inner.invars, eqn.invars):
          if not isinstance(outer_var, jex_core.Literal) and outer_var in env:
            inner_env[inner_var] = env[outer_var]
        walk(inner, inner_env)
        for outer_var, inner_var in zip(eqn.outvars, inner.outvars):
          if not isinstance(inner_var, jex_core.Literal) and inner_var in inner_env:
            env[outer_var] = inner_env[inner_var]
          else:
            env[outer_var] = new_id(outer_var)
            events.append(([], [env[outer_var]], 0))
        continue
      # Loops and conditionals are opaque: their bodies' own peak is a transient.
      transient = max([_jaxpr_peak(j) for j, _ in subs] or [0])
      outs = []
      for var in eqn.outvars:
        env[var] = new_id(var)
        outs.append(env[var])
      events.append((ins, outs, transient))

  env = {v: new_id(v) for v in list(jaxpr.constvars) + list(jaxpr.invars)}
  resident = sum(sizes.values()) + consts_bytes
  walk(jaxpr, env)
  outputs = {env[v] for v in jaxpr.outvars if v in env}
  last_use = {}
  for i, (ins, outs, _) in enumerate(events):
    for ident in outs:
      last_use.setdefault(ident, i)
    for ident in ins:
      last_use[ident] = i
  inputs = set(range(len(sizes))) - {o for _, outs, _ in events for o in outs}
  dying = {}
  for ident, i in last_use.items():
    if ident not in outputs and ident not in inputs:
      dying.setdefault(i, []).append(ident)
  live = peak = resident
  for i, (_, outs, transient) in enumerate(events):
    live += sum(sizes[o] for o in outs)
    peak = max(peak, live + transient)
    live -= sum(sizes[d] for d in dying.get(i, ()))
  return peak


def jaxpr_peak_bytes(fn, *args) -> int:
  """Backend-independent estimate of a function's peak memory, from its jaxpr.

  Runs the (inlined) jaxpr of `fn(*args)` equation by equation in program order, with every
  argument resident throughout, each intermediate live from its equation to its last use, and
  loop / conditional bodies counted as transients; returns the largest total. No fusion (so
  elementwise intermediates count) and no reordering: an estimate of the activation
  footprint that follows the rematerialisation the program asks for, which XLA:CPU's
  concurrency-oriented scheduler does not honour in its own memory analysis.
  """
  import jax  # pylint: disable=g-import-not-at-top
  closed = jax.make_jaxpr(fn)(*args)
  return _jaxpr_peak(closed.jaxpr, sum(getattr(c, 'nbytes', 0) for c in closed.consts))


def matmul_flops_per_s(n: int, dtype: str, repeats: int = 3) -> dict:
  """FLOP/s of an n x n x n matmul (2 n^3 FLOPs), one value per repeat.

  Returns {'wall': FLOP per wall second, 'cpu': FLOP per CPU second of this process}; the
  second is what a shared CPU still measures faithfully (the threads' own time).
  """
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  keys = jax.random.split(jax.random.PRNGKey(0))
  a, b = (jax.random.normal(k, (n, n), jnp.float32).astype(dtype) for k in keys)
  matmul = jax.jit(jnp.matmul).lower(a, b).compile()
  jax.block_until_ready(matmul(a, b))
  rates = {'wall': [], 'cpu': []}
  for _ in range(repeats):
    start, cpu = time.perf_counter(), time.process_time()
    jax.block_until_ready(matmul(a, b))
    rates['wall'].append(2.0 * n**3 / (time.perf_counter() - start))
    rates['cpu'].append(2.0 * n**3 / max(time.process_time() - cpu, 1e-9))
  return rates


def link_heatmap_seconds(batch: int, num_parts: int, size: int, thick: float,
                         repeats: int = 3) -> float:
  """Median seconds of the renderer's forward + backward alone at the step's shapes."""
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from benchmarks.link_heatmap import median_seconds  # pylint: disable=g-import-not-at-top
  from ppl_jax import ops  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(0)
  keypoints = jnp.asarray(rng.uniform(-0.8, 0.8, (batch, num_parts, 2)), jnp.float32)
  weights = jnp.asarray(rng.uniform(0.01, 1.0, (num_parts, num_parts)), jnp.float32)
  cotangent = jnp.asarray(rng.normal(size=(batch, size, size)), jnp.float32)

  def loss(kp, w):
    return jnp.sum(ops.link_heatmap(kp, w, size=(size, size), thick=thick) * cotangent)

  program = jax.jit(jax.value_and_grad(loss, argnums=(0, 1))).lower(keypoints, weights).compile()
  jax.block_until_ready(program(keypoints, weights))
  return median_seconds(program, (keypoints, weights), repeats)


def component_programs(config, setup, state):
  """{name: (compiled fwd+bwd program, args)} for the encoder, decoder and image loss alone.

  Each is the module's forward and backward (gradients w.r.t. its parameters, and for the
  decoder and the perceptual loss w.r.t. their input, as in the step) on random inputs of the
  step's shapes, in train mode.
  """
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from ppl_jax import train_state  # pylint: disable=g-import-not-at-top
  from ppl_jax.losses import make_image_loss  # pylint: disable=g-import-not-at-top
  model = setup.model
  b, s, n = config.batch_size, config.data.image_size, config.model.num_parts
  rng = np.random.default_rng(1)
  image = jnp.asarray(rng.uniform(-1, 1, (b, s, s, 3)), jnp.float32)
  decoder_in = jnp.asarray(rng.uniform(-1, 1, (b, s, s, 4)), jnp.float32)
  variables = jax.tree_util.tree_map(jnp.copy, train_state.model_variables(state))  # state is donated
  params, others = variables['params'], {k: v for k, v in variables.items() if k != 'params'}

  def encoder_loss(params, image):
    def fn(module, image):
      return module.encoder(image, module.prior(), True)[0]
    keypoints, _ = model.apply(dict(others, params=params), image, method=fn,
                               mutable=['batch_stats'])
    return jnp.sum(keypoints * jnp.linspace(-1.0, 1.0, n)[None, :, None])

  def decoder_loss(params, x):
    recon, _ = model.apply(dict(others, params=params), x,
                           method=lambda module, x: module.decoder(x, True),
                           mutable=['batch_stats'])
    return jnp.sum(recon * x[..., :3])

  image_loss_fn, _ = make_image_loss(config.loss, random_vgg=True, dtype=config.model.dtype,
                                     remat=config.model.remat_perceptual)

  def image_loss(recon, target, vgg_params):
    return image_loss_fn(vgg_params, recon, target)[0]

  programs = {
      'encoder': (jax.jit(jax.grad(encoder_loss)), (params, image)),
      'decoder': (jax.jit(jax.grad(decoder_loss, argnums=(0, 1))), (params, decoder_in)),
      'image_loss': (jax.jit(jax.grad(image_loss)), (image, image[::-1], setup.vgg_params)),
  }
  return {name: (fn.lower(*args).compile(), args) for name, (fn, args) in programs.items()}


def pipeline_frames_per_s(config, *, workers: int, batches: int) -> float:
  """Training examples per second delivered by the host pipeline (synthetic source)."""
  import itertools  # pylint: disable=g-import-not-at-top
  from ppl_jax import input_pipeline  # pylint: disable=g-import-not-at-top
  config = copy.deepcopy(config)
  config.data.num_workers = workers
  source = input_pipeline.build_source(config.data, 'train')
  iterator = iter(input_pipeline.create_train_dataset(config, source, seed=0))
  next(iterator)  # worker start-up, caches
  start = time.perf_counter()
  for batch in itertools.islice(iterator, batches):
    assert batch['image'].shape[0] == config.batch_size
  rate = batches * config.batch_size / (time.perf_counter() - start)
  del iterator
  return rate


# ----------------------------------------------------------------------------------------
# One configuration (child process).

def _warn_random_vgg(perceptual: str) -> None:
  print('=' * 78 + f'\nWARNING: the {perceptual} perceptual loss uses RANDOM weights '
        '(--random_vgg): timing only, not a trained network.\n' + '=' * 78,
        file=sys.stderr, flush=True)


def _child(batch: int, size: int, dtype: str, remat: str) -> dict:
  import jax  # pylint: disable=g-import-not-at-top
  from benchmarks.link_heatmap import median_seconds  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from ppl_jax import provenance, sharding, train  # pylint: disable=g-import-not-at-top

  random_vgg = FLAGS.random_vgg and FLAGS.perceptual != 'none'
  if random_vgg:
    _warn_random_vgg(FLAGS.perceptual)
  config = build_config(FLAGS.model, batch, size, num_parts=FLAGS.num_parts,
                        perceptual=FLAGS.perceptual, vgg_weights=FLAGS.vgg_weights,
                        random_vgg=random_vgg, dtype=dtype, remat=remat)
  platform = jax.devices()[0].platform
  matmul_n = FLAGS.matmul_size or (2048 if platform == 'cpu' else 8192)
  record = {
      'model': FLAGS.model, 'batch': batch, 'size': size,
      'num_parts': config.model.num_parts,
      'perceptual': FLAGS.perceptual, 'random_vgg': random_vgg, 'dtype': dtype,
      'remat': remat, 'device': platform, 'device_kind': jax.devices()[0].device_kind,
      'device_count': jax.device_count(), 'cpu_count': os.cpu_count(),
      'load_average_1min_start': round(os.getloadavg()[0], 2),
      'provenance': provenance.current(),
  }
  timed = FLAGS.mode == 'time'
  matmul = {name: {'wall': [], 'cpu': []} for name in ('float32', 'bfloat16')}

  def time_matmuls():
    for name, rates in matmul.items():
      for kind, values in matmul_flops_per_s(matmul_n, name, FLAGS.matmul_repeats).items():
        rates[kind] += values

  if timed:
    time_matmuls()

  mesh = sharding.make_mesh()
  setup = train.create_train_setup(config, mesh, random_vgg=random_vgg)
  abstract_args = abstract_step_args(setup, mesh, batch, size)
  record['jaxpr_peak_bytes'] = jaxpr_peak_bytes(setup.train_step, *abstract_args)
  if FLAGS.mode == 'trace':
    return record
  start = time.perf_counter()
  step = setup.train_step.lower(*abstract_args).compile()
  record['compile_s'] = time.perf_counter() - start
  record.update(cost_summary(step))
  record.update(memory_summary(step))
  if not timed:
    record['peak_rss_gib'] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    return record

  rng = np.random.default_rng(0)
  batch_np = {k: rng.uniform(-1, 1, (batch, size, size, 3)).astype(np.float32)
              for k in ('image', 'reference')}
  data = sharding.shard_batch(batch_np, mesh)
  state = setup.init()
  for i in range(FLAGS.warmup):
    start = time.perf_counter()
    state, metrics = step(state, data, setup.vgg_params)
    jax.block_until_ready(metrics)
    if i == 0:
      record['first_step_s'] = time.perf_counter() - start
  times, cpu_times = [], []
  for _ in range(FLAGS.steps):
    start, cpu = time.perf_counter(), time.process_time()
    state, metrics = step(state, data, setup.vgg_params)
    jax.block_until_ready(metrics)
    times.append(time.perf_counter() - start)
    cpu_times.append(time.process_time() - cpu)
  step_s = statistics.median(times)
  record.update({
      'step_s': step_s, 'step_s_all': times, 'cpu_s_per_step': statistics.median(cpu_times),
      'steps_per_s': 1.0 / step_s, 'frames_per_s': batch / step_s,
      'frames_per_cpu_s': batch / statistics.median(cpu_times),
      'loss': float(metrics['loss']),
  })

  record['link_heatmap_s'] = link_heatmap_seconds(
      batch, config.model.num_parts, size, config.model.thick, FLAGS.component_repeats)
  record['link_heatmap_fraction'] = record['link_heatmap_s'] / step_s
  if FLAGS.breakdown:
    components = {}
    for name, (program, args) in component_programs(config, setup, state).items():
      jax.block_until_ready(program(*args))
      seconds = median_seconds(program, args, FLAGS.component_repeats)
      components[name] = {'s': seconds, 'fraction': seconds / step_s,
                          'flops': cost_summary(program)['flops']}
    components['link_heatmap'] = {'s': record['link_heatmap_s'],
                                  'fraction': record['link_heatmap_fraction']}
    record['components'] = components

  time_matmuls()
  peaks = {name: statistics.median(rates['wall']) for name, rates in matmul.items()}
  cpu_peaks = {name: statistics.median(rates['cpu']) for name, rates in matmul.items()}
  flops_per_cpu_s = record['flops'] / record['cpu_s_per_step']
  record.update({
      'matmul_size': matmul_n,
      'matmul_peak_flops': peaks[dtype],
      'matmul_peak_flops_f32': peaks['float32'],
      'matmul_peak_flops_bf16': peaks['bfloat16'],
      'achieved_flops_per_s': record['flops'] / step_s,
      'peak_fraction': record['flops'] / step_s / peaks[dtype],
      # Per CPU-second of this process: insensitive to other jobs on a shared CPU host.
      'matmul_flops_per_cpu_s': cpu_peaks[dtype],
      'flops_per_cpu_s': flops_per_cpu_s,
      'peak_fraction_cpu': flops_per_cpu_s / cpu_peaks[dtype],
  })

  if FLAGS.pipeline_batches:
    rate = pipeline_frames_per_s(config, workers=FLAGS.pipeline_workers,
                                 batches=FLAGS.pipeline_batches)
    record.update({'pipeline_frames_per_s': rate, 'pipeline_workers': FLAGS.pipeline_workers,
                   'pipeline_ratio': rate / record['frames_per_s']})
  record['peak_rss_gib'] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
  record['load_average_1min_end'] = round(os.getloadavg()[0], 2)
  return record


# ----------------------------------------------------------------------------------------
# Driver.

_COLUMNS = (  # (header, width, format of the record -> text)
    ('B', 4, lambda r: f'{r["batch"]}'),
    ('size', 4, lambda r: f'{r["size"]}'),
    ('N', 3, lambda r: f'{r["num_parts"]}'),
    ('loss', 6, lambda r: r['perceptual'] + ('*' if r['random_vgg'] else '')),
    ('dtype', 8, lambda r: r['dtype']),
    ('remat', 10, lambda r: r['remat']),
    ('step_s', 7, lambda r: _num(r, 'step_s', '.3f')),
    ('frames/s', 8, lambda r: _num(r, 'frames_per_s', '.2f')),
    ('f/CPU-s', 7, lambda r: _num(r, 'frames_per_cpu_s', '.2f')),
    ('GFLOP', 7, lambda r: _num(r, 'flops', '.0f', 1e-9)),
    ('GFLOP/s', 7, lambda r: _num(r, 'achieved_flops_per_s', '.1f', 1e-9)),
    ('peak', 7, lambda r: _num(r, 'matmul_peak_flops', '.1f', 1e-9)),
    ('%peak', 5, lambda r: _num(r, 'peak_fraction', '.0f', 100)),
    ('%pk/CPU', 7, lambda r: _num(r, 'peak_fraction_cpu', '.0f', 100)),
    ('mem GiB', 7, lambda r: _num(r, 'peak_memory_bytes', '.2f', 1 / _GIB)),
    ('est GiB', 7, lambda r: _num(r, 'jaxpr_peak_bytes', '.2f', 1 / _GIB)),
    ('link%', 5, lambda r: _num(r, 'link_heatmap_fraction', '.1f', 100)),
    ('pipe f/s', 8, lambda r: _num(r, 'pipeline_frames_per_s', '.0f')),
    ('pipe/step', 9, lambda r: _num(r, 'pipeline_ratio', '.0f')),
)


def _num(record, key, fmt, scale=1.0):
  return '-' if record.get(key) is None else format(record[key] * scale, fmt)


def _row(values):
  return ' '.join(f'{v:>{w}}' for v, (_, w, _) in zip(values, _COLUMNS))


def main(argv):
  del argv
  for dtype in FLAGS.dtype:
    if dtype not in ('float32', 'bfloat16'):
      raise app.UsageError(f'--dtype={dtype}: float32 or bfloat16.')
  for remat in FLAGS.remat:
    if remat not in REMAT:
      raise app.UsageError(f'--remat={remat}: one of {sorted(REMAT)}.')
  if FLAGS.perceptual != 'none' and not (FLAGS.random_vgg or FLAGS.vgg_weights):
    raise app.UsageError(f'--perceptual={FLAGS.perceptual} needs --vgg_weights=FILE.h5 or '
                         '--random_vgg (timing only).')
  if FLAGS.child:
    record = _child(int(FLAGS.batch[0]), int(FLAGS.size[0]), FLAGS.dtype[0], FLAGS.remat[0])
    print('RESULT ' + json.dumps(record))
    return
  if FLAGS.perceptual != 'none' and FLAGS.random_vgg:
    _warn_random_vgg(FLAGS.perceptual)
  passthrough = [f'--{name}={FLAGS[name].value}' for name in (
      'model', 'num_parts', 'perceptual', 'vgg_weights', 'random_vgg', 'steps', 'warmup',
      'matmul_size', 'matmul_repeats', 'component_repeats', 'breakdown', 'pipeline_workers',
      'pipeline_batches', 'mode')]
  print(f'model={FLAGS.model}; {os.cpu_count()} CPU cores; load average '
        f'{os.getloadavg()[0]:.1f}. "*": random-weight VGG. peak = median matmul FLOP/s of '
        'the dtype, same process; mem = compiled step\'s device memory; est = jaxpr '
        'estimate.')
  print(_row([c[0] for c in _COLUMNS]), flush=True)
  records = []
  for size in FLAGS.size:
    for batch in FLAGS.batch:
      for dtype in FLAGS.dtype:
        for remat in FLAGS.remat:
          result = subprocess.run(
              [sys.executable, os.path.abspath(__file__), '--child', f'--batch={batch}',
               f'--size={size}', f'--dtype={dtype}', f'--remat={remat}', *passthrough],
              capture_output=True, text=True, check=False)
          lines = [l for l in result.stdout.splitlines() if l.startswith('RESULT ')]
          if result.returncode or not lines:
            print(f'B={batch} size={size} {dtype} remat={remat} failed:\n'
                  f'{result.stderr[-3000:]}', flush=True)
            continue
          record = json.loads(lines[-1][len('RESULT '):])
          records.append(record)
          print(_row([c[2](record) for c in _COLUMNS]), flush=True)
          for name, part in record.get('components', {}).items():
            flops = f', {part["flops"] / 1e9:.0f} GFLOP' if 'flops' in part else ''
            print(f'      {name:<12} fwd+bwd alone {part["s"]:.3f} s '
                  f'({100 * part["fraction"]:.0f}% of the step{flops})', flush=True)
  if FLAGS.json:
    with open(FLAGS.json, 'w') as f:
      json.dump(records, f, indent=1)


if __name__ == '__main__':
  app.run(main)
