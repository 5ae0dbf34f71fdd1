r"""Writes a raw dataset to ArrayRecord files (TFDS layout) for fast training input.

  python -m ppl_jax.data.prepare --dataset=h36m --manual_dir=/data/h36m \
      --data_dir=/data/prepared

then train with `config.data.name=h36m`, `config.data.data_dir=/data/prepared`. tfds shows
a tqdm progress bar per split. No TensorFlow needed (see `tfds_builders`).
"""

import os
import shutil

from absl import flags
from absl import logging
import tensorflow_datasets as tfds

from ppl_jax import cli
from ppl_jax.data import tfds_builders

_DATASET = flags.DEFINE_enum('dataset', None, sorted(tfds_builders.BUILDERS),
                             'Dataset to prepare (its config.data.name).')
_MANUAL_DIR = flags.DEFINE_string('manual_dir', None,
                                  'Raw dataset root in the layout of SPEC section 5.')
_DATA_DIR = flags.DEFINE_string('data_dir', None,
                                'Output folder (becomes config.data.data_dir).')


def _topmost_missing(path: str):
  """The highest folder on the way to `path` that does not exist yet (None if it exists)."""
  path, missing = os.path.abspath(path), None
  while not os.path.exists(path):
    missing, path = path, os.path.dirname(path)
  return missing


def prepare(dataset: str, manual_dir: str, data_dir: str) -> str:
  """Prepares `dataset` from `manual_dir` into `data_dir`; returns the version folder.

  On failure, the folders it created are removed again.
  """
  if dataset not in tfds_builders.BUILDERS:
    raise ValueError(f'--dataset={dataset!r}: use one of {sorted(tfds_builders.BUILDERS)}.')
  builder_class = tfds_builders.BUILDERS[dataset]
  if not os.path.isdir(manual_dir) or not os.listdir(manual_dir):
    problem = 'is empty' if os.path.isdir(manual_dir) else 'is not a directory'
    raise FileNotFoundError(
        f'--manual_dir={manual_dir!r} {problem}. '
        + ' '.join(builder_class.MANUAL_DOWNLOAD_INSTRUCTIONS.split()))
  # tfds writes data_dir/<name>/<version> and data_dir/downloads.
  created = {_topmost_missing(os.path.join(data_dir, folder))
             for folder in (builder_class.name, 'downloads')} - {None}
  try:
    builder = builder_class(data_dir=data_dir, file_format='array_record')
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=manual_dir))
  except BaseException:
    for folder in created:
      shutil.rmtree(folder, ignore_errors=True)
    raise
  for split, info in builder.info.splits.items():
    logging.info('%s %s: %d frames in %s', dataset, split, info.num_examples,
                 builder.data_path)
  return str(builder.data_path)


def main(argv):
  del argv
  print(prepare(_DATASET.value, _MANUAL_DIR.value, _DATA_DIR.value))


if __name__ == '__main__':
  flags.mark_flags_as_required(['dataset', 'manual_dir', 'data_dir'])
  cli.run(main, 'ppl_jax.data.prepare')
