"""Fixtures shared by several test modules."""

import shutil
from pathlib import Path

import pytest

from ppl_jax import config as config_lib
from ppl_jax import train

REPO = Path(__file__).resolve().parents[1]


def load_config(name, arg=None):
  """`get_config(arg)` of configs/<name>.py."""
  path = str(REPO / 'configs' / f'{name}.py')
  return config_lib.load_config_file(f'{path}:{arg}' if arg else path)


def tiny_config():
  """configs/synthetic.py:tiny, without the end-of-run evaluation."""
  config = load_config('synthetic', 'tiny')
  config.eval_at_end = False
  config.checkpoint_async = False
  return config


@pytest.fixture(scope='session')
def tiny_trained_run(tmp_path_factory) -> Path:
  """A workdir trained with `tiny_config()` (3 steps, checkpoints 2 and 3), trained once."""
  workdir = tmp_path_factory.getbasetemp() / 'tiny_synthetic_run'
  train.train_and_evaluate(tiny_config(), str(workdir))
  return workdir
