r"""Input-pipeline throughput: images per second delivered by each source.

  python benchmarks/input_pipeline.py --json=benchmarks/results/input_pipeline.json

frames/s = images delivered per second by `create_train_dataset` (a training pair is 2
images: I and I_ref), timed over --repeats windows of --num_batches batches after one
warm-up batch (which absorbs worker start-up); the table shows the median and the best
window, and the 1-minute load average (the machine may be shared). frames/CPU-s =
images per CPU second summed over the pipeline's processes (load-independent).

Sources: 'synthetic' always; 'synthetic_prepared' (the same renderer's frames written to
ArrayRecord by a `VideoSourceBuilder` and read back through `PreparedSource`: the
prepared-data path); 'custom' on a temporary folder of PNG frame folders, or
--custom_root; 'long_h264': one generated H.264 video of --long_video_frames 640x480 frames,
read as own videos are, without ('long_h264') and with ('long_h264_cached',
config.data.frame_cache_bytes as in configs/custom_videos.py) the decode-once frame cache;
'h36m' / 'taichi' with --h36m_root / --taichi_root (raw) or --prepared_dir (prepared data,
both names tried).
"""

import itertools
import json
import os
import sys
import tempfile
import time

from absl import app
from absl import flags
import numpy as np
from PIL import Image
import psutil
import tensorflow_datasets as tfds

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# pylint: disable=g-import-not-at-top,wrong-import-position
from ppl_jax import config as config_lib
from ppl_jax import input_pipeline
from ppl_jax.data import tfds_builders
from ppl_jax.data import synthetic
# pylint: enable=g-import-not-at-top,wrong-import-position

_JSON = flags.DEFINE_string('json', None, 'Write the records here as a JSON list.')
_IMAGE_SIZE = flags.DEFINE_integer('image_size', 128, 'config.data.image_size.')
_BATCH = flags.DEFINE_integer('batch_size', 32, 'Batch (pairs) per step.')
_NUM_BATCHES = flags.DEFINE_integer('num_batches', 50, 'Timed batches per measurement.')
_REPEATS = flags.DEFINE_integer('repeats', 3, 'Timed windows per measurement (median '
                                'reported; the machine may be shared).')
_WORKERS = flags.DEFINE_list('workers', ['0', '2'], 'Worker counts to measure.')
_SOURCES = flags.DEFINE_list('sources', ['synthetic', 'synthetic_prepared', 'custom',
                                         'long_h264', 'long_h264_cached'],
                             'Sources to measure (h36m / taichi need a root).')
_LONG_FRAMES = flags.DEFINE_integer('long_video_frames', 2330,
                                    'Frames of the generated long_h264 video (640x480).')
_H36M_ROOT = flags.DEFINE_string('h36m_root', '', 'Raw Human3.6M root (adds h36m).')
_TAICHI_ROOT = flags.DEFINE_string('taichi_root', '', 'Raw Taichi root (adds taichi).')
_CUSTOM_ROOT = flags.DEFINE_string('custom_root', '',
                                   'Folder of videos; default: a temporary fixture.')
_PREPARED_DIR = flags.DEFINE_string('prepared_dir', '',
                                    'config.data.data_dir with prepared h36m/taichi.')


CUSTOM_CACHE_BYTES = config_lib.load_config_file(
    os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                 'configs', 'custom_videos.py')).data.frame_cache_bytes


class PplSyntheticBench(tfds_builders.VideoSourceBuilder):
  """Synthetic frames (8 videos x 16 frames) in ArrayRecord, for this benchmark only."""

  SOURCE_NAME = 'synthetic_bench'
  SIZE = 128  # set from --image_size in main (flags do not pickle into workers)

  def make_source(self, manual_dir, split):
    del manual_dir
    return synthetic.SyntheticVideos('humanoid', 8, 16, self.SIZE, split=split)


def _custom_fixture(folder):
  """Four videos as folders of 48 PNG frames (moving square on noise), 160 x 120 px."""
  rng = np.random.default_rng(0)
  for v in range(4):
    background = rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)
    os.makedirs(os.path.join(folder, f'video{v}'))
    for t in range(48):
      frame = background.copy()
      frame[40:70, 2 * t:2 * t + 30] = 255
      Image.fromarray(frame).save(os.path.join(folder, f'video{v}', f'{t:04d}.png'))
  return folder


def _long_h264_fixture(folder):
  """One H.264 video of --long_video_frames 640 x 480 frames: a figure moving on noise."""
  from ppl_jax.data import video  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(1)
  background = rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)

  def frames():
    for t in range(_LONG_FRAMES.value):
      frame = background.copy()
      x = int(300 + 250 * np.sin(t / 40))
      frame[150:330, x - 30:x + 30] = (230, 40, 40)
      yield frame

  os.makedirs(folder)
  video.write_video(os.path.join(folder, 'long.mp4'), frames(), fps=30)
  return folder


def _cpu_seconds():
  """User + system CPU seconds of this process and its live worker processes."""
  total = 0.0
  for proc in [psutil.Process()] + psutil.Process().children(recursive=True):
    try:
      times = proc.cpu_times()
    except psutil.NoSuchProcess:
      continue
    total += times.user + times.system
  return total


def measure(config, source, workers, frame_cache_bytes=0):
  """Per timed window of --num_batches: (images per second, images per CPU second).

  Images per CPU second (all processes of the pipeline) is insensitive to other load
  on a shared machine: on a dedicated machine with C cores the pipeline can deliver at
  most about C times that.
  """
  config.data.num_workers = workers
  config.data.frame_cache_bytes = frame_cache_bytes
  it = iter(input_pipeline.create_train_dataset(config, source, seed=0))
  next(it)  # warm-up: worker start-up, caches
  rates, cpu_rates = [], []
  images = 2 * config.batch_size * _NUM_BATCHES.value
  for _ in range(_REPEATS.value):
    cpu, start = _cpu_seconds(), time.perf_counter()
    for batch in itertools.islice(it, _NUM_BATCHES.value):
      assert batch['image'].shape[0] == config.batch_size
    rates.append(images / (time.perf_counter() - start))
    cpu_rates.append(images / (_cpu_seconds() - cpu))
  del it
  return rates, cpu_rates


def main(argv):
  del argv
  config = config_lib.default_config()
  config.data.image_size = _IMAGE_SIZE.value
  config.data.synthetic.render_size = _IMAGE_SIZE.value
  config.batch_size = _BATCH.value
  with tempfile.TemporaryDirectory(prefix='ppl_bench_') as tmp:
    _run(config, tmp)


def _run(config, tmp):
  """Builds the sources (fixtures under `tmp`), measures, prints, writes JSON."""
  sources = {}
  for name in _SOURCES.value:
    if name == 'synthetic':
      sources[name] = input_pipeline.build_source(config.data, 'train')
    elif name == 'synthetic_prepared':
      PplSyntheticBench.SIZE = _IMAGE_SIZE.value
      builder = PplSyntheticBench(data_dir=os.path.join(tmp, 'prepared'),
                                  file_format='array_record')
      builder.download_and_prepare(
          download_config=tfds.download.DownloadConfig(manual_dir=tmp))
      sources[name] = tfds_builders.PreparedSource(
          os.path.join(tmp, 'prepared'), 'synthetic_bench', 'train',
          builder_name=PplSyntheticBench.name)
    elif name == 'custom':
      try:
        from ppl_jax.data import custom  # pylint: disable=g-import-not-at-top
      except ImportError as e:
        print(f'skipping custom: {e}')
        continue
      root = _CUSTOM_ROOT.value or _custom_fixture(os.path.join(tmp, 'custom'))
      sources[name] = custom.CustomVideosSource(root)
    elif name.startswith('long_h264'):
      from ppl_jax.data import custom  # pylint: disable=g-import-not-at-top
      folder = os.path.join(tmp, 'long')
      if not os.path.isdir(folder):
        print(f'writing a {_LONG_FRAMES.value}-frame 640x480 H.264 video...', flush=True)
        _long_h264_fixture(folder)
      sources[name] = custom.CustomVideosSource(folder)
  for name, root in (('h36m', _H36M_ROOT.value), ('taichi', _TAICHI_ROOT.value)):
    if root or _PREPARED_DIR.value:
      data = config.data.copy_and_resolve_references()
      data.name, data.root, data.data_dir = name, root, _PREPARED_DIR.value
      try:
        sources[name] = input_pipeline.build_source(data, 'train')
      except (FileNotFoundError, ValueError) as e:
        print(f'skipping {name}: {e}')
  records = []
  load = os.getloadavg()[0]
  print(f'{os.cpu_count()} cores, load average {load:.1f} before; '
        f'{_IMAGE_SIZE.value}x{_IMAGE_SIZE.value}, batch {_BATCH.value} pairs')
  print(f'{"source":<20} {"workers":>7} {"frames/s (2 images per pair), median":>38} '
        f'{"max":>8} {"frames/CPU-s":>13}')
  for name, source in sources.items():
    for workers in map(int, _WORKERS.value):
      cache = CUSTOM_CACHE_BYTES if name.endswith('_cached') else 0
      rates, cpu_rates = measure(config, source, workers, cache)
      records.append({'source': name, 'workers': workers,
                      'frames_per_s': round(float(np.median(rates)), 1),
                      'frames_per_s_max': round(max(rates), 1),
                      'frames_per_cpu_s': round(float(np.median(cpu_rates)), 1),
                      'image_size': _IMAGE_SIZE.value, 'batch_size': _BATCH.value,
                      'frame_cache_bytes': cache,
                      'load_average_1min': round(os.getloadavg()[0], 2)})
      print(f'{name:<20} {workers:>7} {np.median(rates):>38.1f} {max(rates):>8.1f} '
            f'{np.median(cpu_rates):>13.1f}')
  if _JSON.value:
    with open(_JSON.value, 'w') as f:
      json.dump(records, f, indent=1)


if __name__ == '__main__':
  app.run(main)
