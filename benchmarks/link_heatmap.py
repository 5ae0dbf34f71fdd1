r"""Benchmark of the chunked link-heatmap renderer against the materialising reference.

For each (B, N, H=W) it times forward and forward+backward (value_and_grad of sum(S * c) w.r.t.
keypoints and weights), both jitted: median wall time over repeats after warm-up runs. Memory is
the compiled program's `memory_analysis().temp_size_in_bytes` (XLA's scratch allocation: all
intermediates, excluding arguments and outputs), which is deterministic; the reference is not run
where that exceeds --memory_budget_gib (it is still compiled, which allocates nothing), and the
table says so.

From the repository root (or with the package installed, `pip install -e .`):

  PYTHONPATH=. python benchmarks/link_heatmap.py --repeats 3 \
      --json benchmarks/results/link_heatmap_cpu.json
  PYTHONPATH=. python benchmarks/link_heatmap.py --batch 8 --keypoints 16 --sizes 64 --repeats 3
"""

import argparse
import json
import os
import platform
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from ppl_jax.ops.link_heatmap import DEFAULT_CHUNK, link_heatmap, link_heatmap_reference

_MIB = 2**20


def _parse_args(argv):
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--batch', type=int, nargs='+', default=[8, 64])
  parser.add_argument('--keypoints', type=int, nargs='+', default=[10, 16, 32])
  parser.add_argument('--sizes', type=int, nargs='+', default=[64, 128, 256], help='H = W')
  parser.add_argument('--repeats', type=int, default=5, help='timed runs (median reported)')
  parser.add_argument('--warmup', type=int, default=1, help='untimed runs after compilation')
  parser.add_argument('--thick', type=float, default=5e-4, help='paper default sigma^2')
  parser.add_argument('--chunk', type=int, default=DEFAULT_CHUNK, help='pairs per scan step')
  parser.add_argument('--memory_budget_gib', type=float, default=6.0,
                      help='skip running the reference where its compiled temp memory exceeds this')
  parser.add_argument('--no_reference', action='store_true', help='time only the chunked renderer')
  parser.add_argument('--json', default=None, help='write all results to this JSON file')
  return parser.parse_args(argv)


def median_seconds(fn, args, repeats, warmup=0):
  """Median wall seconds of `repeats` calls of fn(*args) after `warmup` untimed ones."""
  for _ in range(warmup):
    jax.block_until_ready(fn(*args))
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    times.append(time.perf_counter() - start)
  return statistics.median(times)


def _programs(render, size, thick):
  """Jitted forward and forward+backward of a renderer with the given static arguments."""
  forward = jax.jit(lambda kp, w: render(kp, w, size=size, thick=thick))

  def loss(kp, w, cot):
    return jnp.sum(render(kp, w, size=size, thick=thick) * cot)

  return forward, jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))


def _measure(render, inputs, size, args, *, budget_bytes=None):
  """{'fwd'|'fwd_bwd': {'seconds', 'temp_bytes', 'skipped'}} and the forward output (or None)."""
  kp, w, cot = inputs
  forward, forward_backward = _programs(render, size, args.thick)
  results, output = {}, None
  for name, program, program_args in (('fwd', forward, (kp, w)),
                                      ('fwd_bwd', forward_backward, (kp, w, cot))):
    compiled = program.lower(*program_args).compile()
    temp = int(compiled.memory_analysis().temp_size_in_bytes)
    entry = {'temp_bytes': temp, 'seconds': None, 'skipped': None}
    if budget_bytes is not None and temp > budget_bytes:
      entry['skipped'] = f'temp {temp / 2**30:.1f} GiB > budget {budget_bytes / 2**30:.1f} GiB'
    else:
      entry['seconds'] = median_seconds(compiled, program_args, args.repeats, args.warmup)
      if name == 'fwd':
        output = np.asarray(compiled(*program_args))
    results[name] = entry
  return results, output


def _fmt_ms(entry):
  return 'skipped' if entry['seconds'] is None else f'{entry["seconds"] * 1e3:.1f}'


def _fmt_ratio(num, den):
  return '-' if num is None or den is None else f'{num / den:.0f}x'


def main(argv=None):
  args = _parse_args(argv)
  budget = int(args.memory_budget_gib * 2**30)
  rows = []
  header = ('   B   N       HxW | ref fwd ms | new fwd ms | speedup | ref f+b ms | new f+b ms | speedup '
            '| ref f+b MiB | new f+b MiB | mem ratio | max|diff|')
  print(f'jax {jax.__version__} on {jax.devices()[0].platform}, {os.cpu_count()} CPUs; '
        f'thick={args.thick}, chunk={args.chunk}; median of {args.repeats} after {args.warmup} '
        'warm-up; memory = compiled temp_size_in_bytes', flush=True)
  print(header, flush=True)
  for b in args.batch:
    for n in args.keypoints:
      for s in args.sizes:
        rng = np.random.default_rng(0)
        inputs = (jnp.asarray(rng.uniform(-1, 1, (b, n, 2)), jnp.float32),
                  jnp.asarray(rng.uniform(0.05, 1, (n, n)), jnp.float32),
                  jnp.asarray(rng.normal(size=(b, s, s)), jnp.float32))
        render = lambda kp, w, **kw: link_heatmap(kp, w, chunk=args.chunk, **kw)
        new, new_out = _measure(render, inputs, (s, s), args)
        if args.no_reference:
          ref, ref_out = None, None
        else:
          ref, ref_out = _measure(link_heatmap_reference, inputs, (s, s), args,
                                  budget_bytes=budget)
        diff = None if ref_out is None else float(np.abs(ref_out - new_out).max())
        row = {'batch': b, 'keypoints': n, 'pairs': n * (n - 1) // 2, 'height': s, 'width': s,
               'chunked': new, 'reference': ref, 'max_abs_diff_fwd': diff}
        rows.append(row)
        empty = {'seconds': None, 'temp_bytes': None}
        rf, rfb = (ref['fwd'], ref['fwd_bwd']) if ref else (empty, empty)
        ref_mib = None if rfb['temp_bytes'] is None else rfb['temp_bytes'] / _MIB
        cells = [
            _fmt_ms(rf), _fmt_ms(new['fwd']), _fmt_ratio(rf['seconds'], new['fwd']['seconds']),
            _fmt_ms(rfb), _fmt_ms(new['fwd_bwd']),
            _fmt_ratio(rfb['seconds'], new['fwd_bwd']['seconds']),
            '-' if ref_mib is None else f'{ref_mib:.0f}',
            f'{new["fwd_bwd"]["temp_bytes"] / _MIB:.1f}',
            _fmt_ratio(rfb['temp_bytes'], new['fwd_bwd']['temp_bytes']),
            '-' if diff is None else f'{diff:.1e}']
        widths = [10, 10, 7, 10, 10, 7, 11, 11, 9, 9]
        print(f'{b:4d} {n:3d} {f"{s}x{s}":>9} | ' + ' | '.join(
            f'{c:>{wd}}' for c, wd in zip(cells, widths)), flush=True)
        for name in ('fwd', 'fwd_bwd'):
          if ref and ref[name]['skipped']:
            print(f'      reference {name} not run: {ref[name]["skipped"]}', flush=True)
  if args.json:
    os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
    with open(args.json, 'w') as f:
      json.dump({'command': ' '.join([os.path.basename(sys.executable)] + sys.argv),
                 'jax_version': jax.__version__, 'platform': jax.devices()[0].platform,
                 'device': str(jax.devices()[0]), 'cpu_count': os.cpu_count(),
                 'machine': platform.processor() or platform.machine(),
                 'timing': f'median of {args.repeats} after {args.warmup} warm-up (seconds)',
                 'memory': 'compiled memory_analysis().temp_size_in_bytes (bytes)',
                 'thick': args.thick, 'chunk': args.chunk,
                 'memory_budget_gib': args.memory_budget_gib, 'rows': rows}, f, indent=1)
    print(f'wrote {args.json}')


if __name__ == '__main__':
  main()
