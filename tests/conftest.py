"""Fixtures shared by several test modules."""

import shutil
from pathlib import Path

import fsspec
from fsspec.implementations import dirfs
from fsspec.implementations import local
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


class _ObjectStore(dirfs.DirFileSystem):
  """gs:// on a local folder (`root`), with an object store's limits: no appending."""
  protocol = ('gs', 'gcs')
  root = ''

  def __init__(self, **unused_options):   # gcsfs options such as finalize_on_close
    super().__init__(path=self.root, fs=local.LocalFileSystem())

  def open(self, path, mode='rb', *args, **kwargs):
    if 'a' in mode or 'x' in mode:
      raise NotImplementedError(f'object stores have no {mode!r} mode')
    return super().open(path, mode, *args, **kwargs)


@pytest.fixture(scope='session')
def _object_store_root(tmp_path_factory) -> Path:
  _ObjectStore.root = str(tmp_path_factory.mktemp('object_store'))
  # etils.epath reaches gs:// through fsspec.filesystem('gcs', ...) (gcsfs in real use).
  for protocol in _ObjectStore.protocol:
    fsspec.register_implementation(protocol, _ObjectStore, clobber=True)
  return Path(_ObjectStore.root)


@pytest.fixture
def object_store(_object_store_root, request):
  """(url, local folder): a fresh gs://BUCKET/run whose objects land in the local folder."""
  bucket = request.node.name.replace('[', '-').replace(']', '').replace('_', '-')
  return f'gs://{bucket}/run', _object_store_root / bucket / 'run'


def load_benchmark(script: str):
  """The module of benchmarks/<script>.py (benchmarks/ is not a package)."""
  import importlib.util  # pylint: disable=g-import-not-at-top
  spec = importlib.util.spec_from_file_location(f'{script}_bench',
                                                REPO / 'benchmarks' / f'{script}.py')
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module
