r"""The compiled train step as text, to show that a code change leaves training unchanged.

  python benchmarks/step_program.py --config=configs/synthetic.py --out=/tmp/before.hlo
  (change the code: a refactor, a new option at its off value, named scopes)
  python benchmarks/step_program.py --config=configs/synthetic.py --out=/tmp/after.hlo \
      --compare=/tmp/before.hlo

Compiles the config's `train_step` for its first training batch and writes XLA's optimized
HLO with what does not change the computation removed: op metadata (names, source lines),
the module's name and its tables of source files and locations. Equal texts are the same
program on this backend and jax version, so every step of a training computes the same
numbers; `benchmarks/first_step.py` compares the first step's values instead, where the
program changed. Prints the text's sha256; with --compare, says whether the two are equal
(exit 0) or the first lines that differ (exit 1).
"""

import difflib
import hashlib
import os
import re
import sys

from absl import app
from absl import flags
from ml_collections import config_flags

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _REPO not in sys.path:
  sys.path.insert(0, _REPO)

config_flags.DEFINE_config_file('config', os.path.join(_REPO, 'configs', 'synthetic.py'),
                                'Training config.')
flags.DEFINE_string('out', '', 'Write the normalised program text here.')
flags.DEFINE_string('compare', '', 'A text from an earlier run to compare against.')
FLAGS = flags.FLAGS

# ', metadata={op_name="..." source_file=... source_line=...}' on each instruction.
_METADATA = re.compile(r',? ?metadata=\{[^}]*\}')
# The module's header line (its name carries the jitted function's name), and the tables that
# map location ids to files, functions and lines: '3 "/path/file.py"', '1 {file_name_id=...}'.
_HEADER = re.compile(r'^HloModule [^\n]*\n', re.MULTILINE)
_LOCATION_TABLE = re.compile(r'^\d+ ("[^\n]*"|\{file_name_id=[^\n]*\})\n', re.MULTILINE)


def normalise(hlo_text: str) -> str:
  """Optimized HLO text without metadata, module name and source-location tables."""
  return _LOCATION_TABLE.sub('', _HEADER.sub('', _METADATA.sub('', hlo_text)))


def step_program(config) -> str:
  """The normalised optimized HLO of `train_step` on the config's first training batch."""
  from benchmarks import first_step  # pylint: disable=g-import-not-at-top
  setup, batch = first_step.setup_and_first_batch(config)
  compiled = setup.train_step.lower(setup.init(), batch, setup.vgg_params).compile()
  return normalise(compiled.as_text())


def first_differences(new: str, old: str, lines: int = 12) -> list:
  """Up to `lines` lines of a unified diff of old -> new."""
  diff = difflib.unified_diff(old.splitlines(), new.splitlines(), 'compare', 'this run',
                              lineterm='', n=0)
  return [line for _, line in zip(range(lines), diff)]


def main(argv):
  del argv
  text = step_program(FLAGS.config)
  print(f'train step program: sha256 {hashlib.sha256(text.encode()).hexdigest()}, '
        f'{len(text.splitlines())} lines')
  if FLAGS.out:
    with open(FLAGS.out, 'w') as f:
      f.write(text)
  if FLAGS.compare:
    with open(FLAGS.compare) as f:
      old = f.read()
    if text == old:
      print(f'identical to {FLAGS.compare}')
      return 0
    print(f'differs from {FLAGS.compare}:')
    print('\n'.join(first_differences(text, old)))
    return 1
  return 0


if __name__ == '__main__':
  app.run(main)
