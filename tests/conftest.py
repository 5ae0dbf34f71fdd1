"""Fixtures shared by several test modules."""

import importlib.util
import shutil
from pathlib import Path

import pytest

from ppl_jax import train

REPO = Path(__file__).resolve().parents[1]


def load_config(name, arg=None):
  """`get_config(arg)` of configs/<name>.py (the configs folder is not a package)."""
  spec = importlib.util.spec_from_file_location(f'{name}_config', REPO / 'configs' / f'{name}.py')
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg)


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
