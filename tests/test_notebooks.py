"""The notebooks under notebooks/: stored without outputs, and run top to bottom.

Each notebook is executed in a real Jupyter kernel (nbclient, kernel `python3`) with
its small settings (PPL_NOTEBOOK_SMALL=1: a few steps of a tiny model) and every path
it writes under pytest's tmp_path (the kernel's working directory too), so nothing
is written into the repository. An error in any cell fails the test with the cell's
traceback.
"""

import ast
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ppl_jax import predict
from ppl_jax import workdir as workdir_lib
from ppl_jax.data import video
from conftest import REPO

nbformat = pytest.importorskip('nbformat')
nbclient = pytest.importorskip('nbclient')

NOTEBOOKS = ('quickstart', 'your_videos')
CELL_TIMEOUT_S = 900


def _shared_dir() -> Path:
  return Path(os.environ.get('PPL_SHARED_DIR', REPO.parent / 'shared'))


def _read(name):
  return nbformat.read(REPO / 'notebooks' / f'{name}.ipynb', as_version=4)


def _execute(name: str, tmp_path: Path, **env_vars: str):
  """Runs notebooks/<name>.ipynb in a fresh kernel in tmp_path; returns it executed."""
  notebook = _read(name)
  env = dict(os.environ)
  env.pop('MPLBACKEND', None)   # the kernel's inline backend: figures become outputs
  env.update(
      PPL_NOTEBOOK_SMALL='1',
      PPL_NOTEBOOK_WORKDIR=str(tmp_path / 'workdir'),
      # ppl_jax from this checkout, installed or not.
      PYTHONPATH=os.pathsep.join(p for p in (str(REPO), env.get('PYTHONPATH')) if p),
      # Compile faster: the tiny model's run time does not matter here.
      XLA_FLAGS=' '.join(f for f in (env.get('XLA_FLAGS'),
                                     '--xla_backend_optimization_level=0') if f),
      **env_vars)
  client = nbclient.NotebookClient(
      notebook, timeout=CELL_TIMEOUT_S, kernel_name='python3',
      resources={'metadata': {'path': str(tmp_path)}})
  client.execute(env=env)
  return notebook


def _outputs(notebook, output_type=None):
  return [o for cell in notebook.cells if cell.cell_type == 'code'
          for o in cell.outputs if output_type in (None, o.output_type)]


def _images(notebook):
  return [o for o in _outputs(notebook, 'display_data') if 'image/png' in o.data]


def _stdout(notebook):
  return ''.join(o.text for o in _outputs(notebook, 'stream') if o.name == 'stdout')


@pytest.mark.parametrize('name', NOTEBOOKS)
def test_stored_without_outputs(name):
  path = REPO / 'notebooks' / f'{name}.ipynb'
  notebook = _read(name)
  nbformat.validate(notebook)
  assert notebook.metadata.kernelspec.name == 'python3'
  for cell in notebook.cells:
    if cell.cell_type == 'code':
      assert cell.outputs == [], f'{path}: a code cell has stored outputs'
      assert cell.execution_count is None, f'{path}: a code cell has an execution count'
      ast.parse(cell.source)   # also the Colab-only branches, which the tests do not run
  sources = '\n'.join(cell.source for cell in notebook.cells)
  assert "os.environ.get('PPL_NOTEBOOK_SMALL', '0') == '1'" in sources
  assert "'google.colab' in sys.modules" in sources
  assert 'colab.research.google.com/github/' in notebook.cells[0].source


@pytest.mark.slow
def test_quickstart(tmp_path):
  notebook = _execute('quickstart', tmp_path)
  workdir = tmp_path / 'workdir'
  assert workdir_lib.checkpoint_steps(str(workdir)) == [2, 3]    # configs/synthetic.py:tiny
  assert (workdir / 'metrics.jsonl').is_file()
  for figure in ('prior', 'pose_overlays', 'occlusion_strip'):
    assert (workdir / 'notebook_figures' / f'{figure}.png').is_file(), figure
  # Loss curves, prior, pose overlays, occlusion strip.
  assert len(_images(notebook)) >= 4
  text = _stdout(notebook)
  assert 'matched error' in text
  assert 'iteration 3: matched error on this frame' in text
  assert (workdir / 'eval' / 'report.json').is_file()   # the full evaluation report


@pytest.mark.slow
def test_your_videos(tmp_path):
  videos = _shared_dir() / 'data' / 'mirror-mouse' / 'videos'
  if not (videos / 'test_vid.mp4').is_file():
    pytest.skip(f'{videos}/test_vid.mp4 not found: the shared data folder (../shared next '
                'to the repository, or PPL_SHARED_DIR) is absent.')
  out = tmp_path / 'predictions'
  notebook = _execute('your_videos', tmp_path, PPL_NOTEBOOK_VIDEO_DIR=str(videos),
                      PPL_NOTEBOOK_OUT_DIR=str(out))
  workdir = tmp_path / 'workdir'
  assert workdir_lib.checkpoint_steps(str(workdir)) == [2, 3]
  num_parts = workdir_lib.load_config(str(workdir)).model.num_parts
  assert num_parts == 10

  table = pd.read_csv(out / 'test_vid_ppl.csv', header=[0, 1, 2], index_col=0)
  info = video.probe(videos / 'test_vid.mp4')
  assert list(table.index) == list(range(info.num_frames))    # one row per frame (994)
  assert set(table.columns.get_level_values(0)) == {predict.SCORER}
  assert list(table.columns.get_level_values(1).unique()) == predict.bodypart_names(
      num_parts)
  assert list(table.columns.get_level_values(2)[:3]) == ['x', 'y', 'likelihood']
  assert np.isfinite(table.to_numpy(float)).all()
  assert (out / 'test_vid_ppl_overlay.mp4').is_file()
  # First frames, loss curves, prior, poses on frames; the CSV head as a table.
  assert len(_images(notebook)) >= 4
  assert any('text/html' in o.data for o in _outputs(notebook, 'display_data'))
  assert f'{info.num_frames} frames x {num_parts} keypoints' in _stdout(notebook)
