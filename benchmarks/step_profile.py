r"""Where the train step's time goes: every XLA kernel of one compiled step, by component.

  python benchmarks/step_profile.py --batch=16 --size=64     # the synthetic default's step
  python benchmarks/step_profile.py --model=full --perceptual=vgg16 --random_vgg --batch=8 \
      --size=128 --steps=2 --json=benchmarks/results/step_profile_full.json

Compiles the jitted train step of `ppl_jax.train.create_train_setup` (the config and the flags
are `train_step.py`'s, one --batch and one --size), runs --warmup steps, then --steps steps
under `jax.profiler` and reads the trace back: each kernel event is one instruction of the
compiled HLO, whose `op_name` metadata carries the Flax module path, the forward (`jvp`) or
backward (`transpose`) pass and the named scopes of `train.py` (equivariance, warp, objective,
image_loss, optimizer, halt_check; XLA may fuse the halt check's selects with the optimizer's
update, which then counts as 'halt check'). Kernels are grouped by component and direction,
by kind (convolution, dot, layout copy/transpose, elementwise/reduction/other; a loop's
kernels count on their own, not the loop) and by operation (the op_name's last two segments).
A convolution's FLOPs are computed from its HLO shapes (2 x output elements x window x input
features per group), so the table gives each component's convolution rate beside the f32
matmul peak measured in the same process.

Columns: ms per step; share of the summed kernel time; convolution ms, GFLOP and GFLOP/s.
`kernel_sum_s` / `step_s` says how much of the wall step the kernels cover (the rest is the
runtime's scheduling and waiting between kernels).
"""

import collections
import glob
import gzip
import json
import os
import re
import statistics
import sys
import tempfile
import time

from absl import app
from absl import flags

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _REPO not in sys.path:
  sys.path.insert(0, _REPO)

FLAGS = flags.FLAGS


def _define_flags():
  """The config flags are train_step.py's (--model, --batch, --size, --num_parts, --perceptual,
  --random_vgg, --steps, --warmup, --json; --batch and --size take one value here), defined
  when run as a script only, so that tests can import the helpers below."""
  from benchmarks import train_step  # pylint: disable=g-import-not-at-top,unused-import
  flags.DEFINE_integer('top', 12, 'Also list the slowest kernels and operations.')


# (component, substrings of op_name, first match wins). Checked after the pass and direction.
_COMPONENTS = (
    ('halt check', ('halt_check',)),
    ('optimizer', ('optimizer',)),
    ('image loss', ('image_loss',)),
    ('decoder', ('/decoder/',)),
    ('link heatmap', ('render_and_decode',)),
    ('memory + mixers', ('/mix_enc/', '/mix_dec/', '/memory/')),
    ('prior', ('PPL.prior',)),
    ('encoder', ('/encoder/',)),
    ('warp', ('/warp/',)),
    ('objective (other terms)', ('objective',)),
    ('random numbers', ('threefry', '_uniform', 'random_')),
)
_LOOPS = ('while', 'conditional', 'call')   # their bodies' kernels are traced on their own


def component_of(op_name: str) -> str:
  """'<component> <fwd|bwd>[, equivariance pass]' for an HLO op_name (of a fusion whose
  instructions XLA merged, 'a;b': the first)."""
  op_name = op_name.split(';')[0]
  for name, keys in _COMPONENTS:
    if any(k in op_name for k in keys):
      break
  else:
    name = 'other'
  direction = 'bwd' if 'transpose(' in op_name else 'fwd'
  if name in ('halt check', 'optimizer', 'random numbers', 'other'):
    label = name
  else:
    label = f'{name} {direction}'
  if 'equivariance' in op_name:
    label += ', equivariance pass'
  return label


def operation_of(op_name: str) -> str:
  """The op_name's last two path segments with layer numbers dropped (e.g. 'bnN/mul',
  'jit(resize)/dot_general'), naming what a kernel computes across layers."""
  tail = '/'.join(op_name.split(';')[0].split('/')[-2:]) if op_name else '(no metadata)'
  return re.sub(r'(?<=_)\d+|(?<=^bn)\d+|(?<=/bn)\d+|(?<=conv)\d+', 'N', tail)


# `name = shape opcode(operands), attributes`; a tuple shape is parenthesised and has spaces.
_INSTR = re.compile(r'^\s*(?:ROOT\s+)?%?([\w.\-]+)\s*=\s*(\((?:[^()]|\([^()]*\))*\)|\S+?)\s+'
                    r'([\w\-]+)\((.*)$')
_SHAPE = re.compile(r'^[a-z0-9]+\[([\d,]*)\]')


def parse_hlo(text: str) -> dict:
  """{instruction name: {op, dims, operands, calls, op_name, window, dim_labels}}."""
  instructions = {}
  for line in text.splitlines():
    m = _INSTR.match(line)
    if not m:
      continue
    name, shape, opcode, rest = m.groups()
    args = rest.split(')', 1)[0]
    op_name = re.search(r'op_name="([^"]*)"', rest)
    calls = re.search(r'calls=%?([\w.\-]+)', rest)
    window = re.search(r'window=\{size=([\dx]+)', rest)
    labels = re.search(r'dim_labels=(\w+)_(\w+)->(\w+)', rest)
    dims = _SHAPE.match(shape)
    instructions[name] = {
        'op': opcode,
        'dims': [int(d) for d in dims.group(1).split(',') if d] if dims else None,
        'operands': re.findall(r'%([\w.\-]+)', args),
        'calls': calls.group(1) if calls else None,
        'op_name': op_name.group(1) if op_name else '',
        'window': [int(w) for w in window.group(1).split('x')] if window else [],
        'dim_labels': labels.groups() if labels else None,
    }
  return instructions


def computation_members(text: str) -> dict:
  """{computation name: [instruction names]} of the HLO text."""
  members, current = collections.defaultdict(list), None
  for line in text.splitlines():
    head = re.match(r'^(?:ENTRY\s+)?%?([\w.\-]+)\s.*\{\s*$', line)
    if head and not line.startswith(' '):
      current = head.group(1)
      continue
    m = _INSTR.match(line)
    if m and current:
      members[current].append(m.group(1))
  return members


def conv_flops(instr: dict, instructions: dict) -> float:
  """2 x output elements x window elements x input features per group of a convolution."""
  if instr['op'] != 'convolution' or not instr['dims'] or not instr['dim_labels']:
    return 0.0
  kernel = instructions.get(instr['operands'][1]) if len(instr['operands']) > 1 else None
  if kernel is None or not kernel['dims']:
    return 0.0
  _, kernel_labels, _ = instr['dim_labels']
  in_features = kernel['dims'][kernel_labels.index('i')]
  window = 1
  for w in instr['window']:
    window *= w
  out = 1
  for d in instr['dims']:
    out *= d
  return 2.0 * out * window * in_features


class Kernels:
  """Per HLO instruction: its component, kind and convolution FLOPs."""

  def __init__(self, hlo_text: str):
    self.instructions = parse_hlo(hlo_text)
    self.members = computation_members(hlo_text)

  def _inner(self, name):
    instr = self.instructions[name]
    return [self.instructions[m] for m in self.members.get(instr['calls'] or '', [])
            if m in self.instructions]

  def op_name(self, name: str, depth: int = 3) -> str:
    """The instruction's op_name, else its fused body's, else its operands' but the step's
    arguments (XLA drops the metadata of some fusions, e.g. a weight gradient's convolution)."""
    instr = self.instructions[name]
    if instr['op_name']:
      return instr['op_name']
    for inner in self._inner(name):
      if inner['op_name']:
        return inner['op_name']
    if depth:
      for operand in instr['operands']:
        if operand in self.instructions and self.instructions[operand]['op'] != 'parameter':
          found = self.op_name(operand, depth - 1)
          if found:
            return found
    return ''

  def kind(self, name: str) -> str:
    instr = self.instructions[name]
    ops = {instr['op']} | {inner['op'] for inner in self._inner(name)}
    if 'convolution' in ops:
      return 'convolution'
    if 'dot' in ops:
      return 'dot'
    if ops & {'transpose', 'copy'} and not ops - {'transpose', 'copy', 'parameter',
                                                  'bitcast', 'reshape'}:
      return 'layout copy/transpose'
    if instr['op'] in ('transpose', 'copy') or name.startswith(('transpose', 'copy')):
      return 'layout copy/transpose'
    return 'elementwise/reduction/other'

  def flops(self, name: str) -> float:
    instr = self.instructions[name]
    return conv_flops(instr, self.instructions) + sum(
        conv_flops(inner, self.instructions) for inner in self._inner(name))


def trace_events(trace_dir: str):
  """(name, duration in s) of every complete event of the profiler trace in trace_dir."""
  files = sorted(glob.glob(os.path.join(trace_dir, 'plugins', 'profile', '*', '*.trace.json.gz')))
  if not files:
    raise FileNotFoundError(f'No *.trace.json.gz under {trace_dir}/plugins/profile.')
  with gzip.open(files[-1]) as f:
    events = json.load(f)['traceEvents']
  return [(e['name'], e['dur'] * 1e-6) for e in events if e.get('ph') == 'X' and 'dur' in e]


def summarise(kernels: Kernels, events, steps: int, top: int = 12) -> dict:
  """Per-step seconds by component, by kind and per kernel; convolution FLOPs per component."""
  by_component = collections.defaultdict(lambda: {'s': 0.0, 'conv_s': 0.0, 'conv_flops': 0.0})
  by_kind = collections.Counter()
  by_kernel = collections.Counter()
  by_operation = collections.Counter()
  labels, kinds, operations = {}, {}, {}   # per kernel, worked out at its first event
  for name, seconds in events:
    if name not in kernels.instructions or kernels.instructions[name]['op'] in _LOOPS:
      continue   # the runtime's own events, and loops (their bodies' kernels are events)
    seconds /= steps
    if name not in labels:
      op_name = kernels.op_name(name)
      labels[name] = component_of(op_name)
      kinds[name] = kernels.kind(name)
      operations[name] = operation_of(op_name)
    label, kind = labels[name], kinds[name]
    row = by_component[label]
    row['s'] += seconds
    if kind == 'convolution':
      row['conv_s'] += seconds
    row[kind] = row.get(kind, 0.0) + seconds
    by_kind[kind] += seconds
    by_kernel[name] += seconds
    by_operation[operations[name]] += seconds
  # FLOPs once per kernel that ran: a kernel runs once per step unless it sits in a loop body
  # (no convolution does in these models).
  for name in by_kernel:
    if kinds[name] == 'convolution':
      by_component[labels[name]]['conv_flops'] += kernels.flops(name)
  total = sum(by_kind.values())
  if not total:
    raise ValueError('No trace event names an instruction of the compiled step: the profiler '
                     'trace or the HLO text is not what this script expects.')
  return {
      'kernel_sum_s': total,
      'components': {k: dict(v, fraction=v['s'] / total) for k, v in sorted(
          by_component.items(), key=lambda kv: -kv[1]['s'])},
      'kinds': {k: {'s': v, 'fraction': v / total} for k, v in by_kind.most_common()},
      'operations': {k: {'s': v, 'fraction': v / total}
                     for k, v in by_operation.most_common(top)},
      'slowest_kernels': [
          {'name': n, 's': s, 'component': labels[n], 'kind': kinds[n],
           'conv_gflop': kernels.flops(n) / 1e9}
          for n, s in by_kernel.most_common(top)],
      'conv_flops': sum(v['conv_flops'] for v in by_component.values()),
  }


def main(argv):
  del argv
  from benchmarks import train_step as train_step_bench  # pylint: disable=g-import-not-at-top
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from ppl_jax import provenance, sharding, train  # pylint: disable=g-import-not-at-top

  build_config = train_step_bench.build_config
  matmul_flops_per_s = train_step_bench.matmul_flops_per_s
  if len(FLAGS.batch) != 1 or len(FLAGS.size) != 1:
    raise app.UsageError('--batch and --size take one value each here.')
  b, s = int(FLAGS.batch[0]), int(FLAGS.size[0])
  random_vgg = FLAGS.random_vgg and FLAGS.perceptual != 'none'
  config = build_config(FLAGS.model, b, s, num_parts=FLAGS.num_parts,
                        perceptual=FLAGS.perceptual, random_vgg=random_vgg)
  mesh = sharding.make_mesh()
  setup = train.create_train_setup(config, mesh, random_vgg=random_vgg)
  step = setup.train_step.lower(
      *train_step_bench.abstract_step_args(setup, mesh, b, s)).compile()
  kernels = Kernels(step.as_text())
  rng = np.random.default_rng(0)
  data = sharding.shard_batch({k: rng.uniform(-1, 1, (b, s, s, 3)).astype(np.float32)
                               for k in ('image', 'reference')}, mesh)
  peak_before = matmul_flops_per_s(2048, 'float32')['wall']
  state = setup.init()
  for _ in range(FLAGS.warmup):
    state, metrics = step(state, data, setup.vgg_params)
    jax.block_until_ready(metrics)
  times = []
  with tempfile.TemporaryDirectory() as trace_dir:
    jax.profiler.start_trace(trace_dir, create_perfetto_trace=True)
    for _ in range(FLAGS.steps):
      start = time.perf_counter()
      state, metrics = step(state, data, setup.vgg_params)
      jax.block_until_ready(metrics)
      times.append(time.perf_counter() - start)
    jax.profiler.stop_trace()
    events = trace_events(trace_dir)
  peak = statistics.median(peak_before + matmul_flops_per_s(2048, 'float32')['wall'])
  record = {'model': FLAGS.model, 'batch': b, 'size': s, 'num_parts': config.model.num_parts,
            'perceptual': FLAGS.perceptual, 'random_vgg': random_vgg,
            'step_s': statistics.median(times), 'step_s_all': times,
            'matmul_peak_flops_f32': peak, 'flops': train_step_bench.cost_summary(step)['flops'],
            'load_average_1min': round(os.getloadavg()[0], 2),
            'provenance': provenance.current()}
  record.update(summarise(kernels, events, FLAGS.steps, FLAGS.top))

  print(f'model={FLAGS.model} B={b} {s} px N={config.model.num_parts}: '
        f'step {record["step_s"]:.3f} s (profiled), kernels {record["kernel_sum_s"]:.3f} s, '
        f'step {record["flops"] / 1e9:.1f} GFLOP, f32 matmul peak {peak / 1e9:.0f} GFLOP/s, '
        f'load {record["load_average_1min"]}')
  print(f'{"component":44s} {"ms":>7s} {"share":>6s} {"conv ms":>8s} {"conv GFLOP":>10s} '
        f'{"conv GFLOP/s":>12s}')
  for name, row in record['components'].items():
    rate = row['conv_flops'] / row['conv_s'] / 1e9 if row['conv_s'] else float('nan')
    print(f'{name:44s} {row["s"] * 1e3:7.1f} {row["fraction"]:6.1%} {row["conv_s"] * 1e3:8.1f} '
          f'{row["conv_flops"] / 1e9:10.2f} {rate:12.1f}')
  print('by kind: ' + ', '.join(f'{k} {v["s"] * 1e3:.1f} ms ({v["fraction"]:.0%})'
                                for k, v in record['kinds'].items()))
  print('slowest operations (op_name tail, all layers and passes):')
  for name, row in record['operations'].items():
    print(f'  {row["s"] * 1e3:6.2f} ms {row["fraction"]:6.1%}  {name}')
  print('slowest kernels:')
  for row in record['slowest_kernels']:
    print(f'  {row["s"] * 1e3:6.2f} ms  {row["name"]:28s} {row["kind"]:26s} {row["component"]}'
          + (f'  {row["conv_gflop"]:.2f} GFLOP' if row['conv_gflop'] else ''))
  if FLAGS.json:
    with open(FLAGS.json, 'w') as f:
      json.dump(record, f, indent=1)


if __name__ == '__main__':
  _define_flags()
  app.run(main)
