"""Trains and evaluates PPL: `python -m ppl_jax.main --config=configs/x.py --workdir=DIR`.

Kept short on purpose: the logic lives in `ppl_jax.train` (importable, tested).
Config fields can be overridden on the command line, e.g. `--config.batch_size=8`;
config files take an argument after a colon, e.g. `configs/h36m.py:size=128,variant=4`.
Rerunning with the same --workdir resumes from its latest checkpoint.
"""

import logging as py_logging

from absl import flags
from absl import logging
import jax
from ml_collections import config_flags

from ppl_jax import cli
from ppl_jax import sharding
from ppl_jax import train

FLAGS = flags.FLAGS
flags.DEFINE_string('workdir', None, 'Directory for checkpoints, metrics and images: a '
                    'local path, or gs://BUCKET/PATH (needs gcsfs: pip install ppl_jax[gcs]).')
config_flags.DEFINE_config_file('config', None, 'Training configuration file.',
                                lock_config=True)
flags.DEFINE_bool('random_vgg', False,
                  'Use a random-weight VGG for the perceptual loss (timing only).')
flags.mark_flags_as_required(['config', 'workdir'])


class _QuietLibraries(py_logging.Filter):
  """Drops orbax's per-save INFO chatter; its warnings and errors still show."""

  def filter(self, record):
    return record.levelno >= py_logging.WARNING or '/orbax/' not in record.pathname


def main(argv):
  del argv
  logging.get_absl_handler().addFilter(_QuietLibraries())
  sharding.maybe_initialize_distributed()
  logging.info('JAX process %d / %d, devices: %s', jax.process_index(),
               jax.process_count(), jax.devices())
  train.train_and_evaluate(FLAGS.config, FLAGS.workdir, random_vgg=FLAGS.random_vgg)


if __name__ == '__main__':
  # grain worker processes are spawned and re-import this module: start only here.
  cli.run(main, 'ppl_jax.main')
