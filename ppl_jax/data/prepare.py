r"""Writes a raw dataset to ArrayRecord files (TFDS layout) for fast training input.

  python -m ppl_jax.data.prepare --dataset=h36m --manual_dir=/data/h36m \
      --data_dir=/data/prepared

then train with `config.data.name=h36m`, `config.data.data_dir=/data/prepared`. tfds shows
a tqdm progress bar per split. No TensorFlow needed (see `tfds_builders`).
"""

import os

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


def prepare(dataset: str, manual_dir: str, data_dir: str) -> str:
  """Prepares `dataset` from `manual_dir` into `data_dir`; returns the version folder."""
  if dataset not in tfds_builders.BUILDERS:
    raise ValueError(f'--dataset={dataset!r}: use one of {sorted(tfds_builders.BUILDERS)}.')
  if not os.path.isdir(manual_dir):
    raise FileNotFoundError(f'--manual_dir={manual_dir!r} is not a directory.')
  builder = tfds_builders.BUILDERS[dataset](data_dir=data_dir, file_format='array_record')
  builder.download_and_prepare(
      download_config=tfds.download.DownloadConfig(manual_dir=manual_dir))
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
