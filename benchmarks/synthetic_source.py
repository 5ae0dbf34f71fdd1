"""Frames/s of the synthetic source alone (rendering only, no resize or batching).

  python3 benchmarks/synthetic_source.py   # 64/128/256 px, 1 and 2 processes
  python3 benchmarks/synthetic_source.py --sizes 128 --json /tmp/synthetic_source.json

For each kind and render size it reports: the one-off cost of a video's first
frame (background + joint trajectories, then cached), the warm single-process
rate (wall clock and CPU time; CPU time is the better number on a shared
machine), and the aggregate wall-clock rate of P spawned processes rendering
random (video, frame) pairs, as grain workers do.
"""

import argparse
import concurrent.futures
import json
import multiprocessing
import os
import platform
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from ppl_jax.data import synthetic  # pylint: disable=wrong-import-position


def _render(source, pairs, barrier=None):
  """Renders (video, frame) pairs; returns (wall start, wall end, cpu seconds)."""
  for v in range(source.num_videos):   # warm the per-video caches first
    source.frame(v, 0)
  if barrier is not None:  # all processes start rendering together
    barrier.wait()
  start, cpu = time.time(), time.process_time()
  for v, t in pairs:
    source.frame(int(v), int(t))
  return start, time.time(), time.process_time() - cpu


def _pairs(source, count, seed):
  rng = np.random.default_rng(seed)
  return np.stack([rng.integers(source.num_videos, size=count),
                   rng.integers(source.num_frames(0), size=count)], axis=1)


def _measure(kind, size, args):
  source = synthetic.SyntheticVideos(kind, args.videos, args.frames_per_video, size,
                                     seed=0, split='train')
  start = time.perf_counter()
  for v in range(args.videos):
    source.frame(v, 0)
  first_ms = (time.perf_counter() - start) / args.videos * 1e3
  row = {'kind': kind, 'size': size, 'first_frame_ms': first_ms}
  start, end, cpu = _render(source, _pairs(source, args.frames, 0))
  row['fps_1proc_wall'] = args.frames / (end - start)
  row['fps_1proc_cpu'] = args.frames / cpu
  for processes in args.processes:
    if processes == 1:
      continue
    share = args.frames // processes
    context = multiprocessing.get_context('spawn')   # as grain starts its workers
    with context.Manager() as manager, concurrent.futures.ProcessPoolExecutor(
        processes, mp_context=context) as pool:
      barrier = manager.Barrier(processes)
      spans = list(pool.map(_render, [source] * processes,
                            [_pairs(source, share, p + 1) for p in range(processes)],
                            [barrier] * processes))
    wall = max(s[1] for s in spans) - min(s[0] for s in spans)
    row[f'fps_{processes}proc_wall'] = share * processes / wall
  return row


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--kinds', nargs='+', default=list(synthetic.KINDS))
  parser.add_argument('--sizes', nargs='+', type=int, default=[64, 128, 256])
  parser.add_argument('--processes', nargs='+', type=int, default=[1, 2])
  parser.add_argument('--frames', type=int, default=3000, help='frames per measurement')
  parser.add_argument('--videos', type=int, default=64)
  parser.add_argument('--frames_per_video', type=int, default=64)
  parser.add_argument('--json', default='', help='write the rows to this JSON file')
  args = parser.parse_args()

  rows = [_measure(kind, size, args) for kind in args.kinds for size in args.sizes]
  columns = ['kind', 'size', 'first_frame_ms', 'fps_1proc_wall', 'fps_1proc_cpu'] + [
      f'fps_{p}proc_wall' for p in args.processes if p != 1]
  print(' | '.join(f'{c:>15}' for c in columns))
  for row in rows:
    print(' | '.join(f'{row[c]:>15.1f}' if isinstance(row[c], float) else f'{row[c]:>15}'
                     for c in columns))
  if args.json:
    with open(args.json, 'w') as f:
      json.dump({'command': ' '.join(sys.argv), 'cpu_count': os.cpu_count(),
                 'load_average': os.getloadavg(), 'python': platform.python_version(),
                 'numpy': np.__version__, 'rows': rows}, f, indent=2)


if __name__ == '__main__':
  main()
