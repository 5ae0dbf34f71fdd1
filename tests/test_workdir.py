"""The workdir module: its lock, resuming past a damaged checkpoint, an incompatible resume,
and `evaluate --out_dir`; each checks what is left on disk afterwards."""

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time

import pytest

from ppl_jax import checkpointing
from ppl_jax import cli
from ppl_jax import evaluate
from ppl_jax import train
from ppl_jax import workdir as workdir_lib
from conftest import REPO, tiny_config


def _tree(root):
  """{relative path: bytes} of every file under root."""
  return {os.path.relpath(os.path.join(d, n), root): open(os.path.join(d, n), 'rb').read()
          for d, _, names in os.walk(root) for n in names}


def _dead_pid():
  process = subprocess.Popen([sys.executable, '-c', 'pass'])
  process.wait()
  return process.pid


@pytest.fixture
def run_copy(tiny_trained_run, tmp_path):
  """A private copy of the tiny trained workdir (checkpoints 2 and 3), without any report."""
  workdir = tmp_path / 'run'
  shutil.copytree(tiny_trained_run, workdir, ignore=shutil.ignore_patterns('eval'))
  return workdir


def test_lock_refuses_a_live_holder_and_takes_over_a_stale_one(tmp_path, caplog):
  workdir, lock = tmp_path / 'w', tmp_path / 'w' / 'lock'
  with workdir_lib.lock(str(workdir)):
    holder = json.loads(lock.read_text())
    assert (holder['host'], holder['pid']) == (socket.gethostname(), os.getpid())
    with pytest.raises(workdir_lib.WorkdirLockedError,
                       match=f'PID {os.getpid()} on host {socket.gethostname()}'):
      with workdir_lib.lock(str(workdir)):
        pass
    assert json.loads(lock.read_text()) == holder      # the refused one left it alone
  assert not workdir.exists()                          # released; nothing was written
  # A killed run's lock (dead PID, this host), and one cut short while being written.
  for stale in (json.dumps({'host': socket.gethostname(), 'pid': _dead_pid()}),
                '{"host": "' + socket.gethostname() + '", "pi'):
    workdir.mkdir(exist_ok=True)
    lock.write_text(stale)
    os.utime(lock, (time.time() - 60, time.time() - 60))   # not one being written now
    caplog.clear()
    with caplog.at_level('WARNING'):
      with workdir_lib.lock(str(workdir)):
        assert json.loads(lock.read_text())['pid'] == os.getpid()
    assert 'stale lock' in caplog.text
    assert not lock.exists()
  # A lock that does not parse yet, being written by a run starting now: waited for.
  lock.write_text('')
  threading.Timer(0.5, lambda: lock.write_text(json.dumps(
      {'host': socket.gethostname(), 'pid': os.getpid(), 'started': 'now'}))).start()
  with pytest.raises(workdir_lib.WorkdirLockedError, match=f'PID {os.getpid()}'):
    with workdir_lib.lock(str(workdir)):
      pass
  # Another host's process cannot be checked from here: refused, the lock kept.
  other = json.dumps({'host': 'another-host', 'pid': _dead_pid(), 'started': 'then'})
  lock.write_text(other)
  with pytest.raises(workdir_lib.WorkdirLockedError, match='another-host'):
    with workdir_lib.lock(str(workdir)):
      pass
  assert lock.read_text() == other


def test_second_training_is_refused_and_changes_nothing(run_copy):
  before = _tree(run_copy)
  config = tiny_config()
  config.num_train_steps = 5
  with workdir_lib.lock(str(run_copy)):   # held by this (live) process
    held = _tree(run_copy)
    with pytest.raises(workdir_lib.WorkdirLockedError, match=f'PID {os.getpid()}'):
      train.train_and_evaluate(config, str(run_copy))
    assert _tree(run_copy) == held
    done = subprocess.run(
        [sys.executable, '-m', 'ppl_jax.main', '--config=configs/synthetic.py:tiny',
         f'--workdir={run_copy}', '--config.num_train_steps=5'],
        cwd=REPO, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == cli.EXIT_USER_ERROR, done.stderr[-2000:]
    assert f'is in use by the training with PID {os.getpid()}' in done.stderr
    assert 'Traceback' not in done.stderr
  assert _tree(run_copy) == before


def test_resume_falls_back_past_a_damaged_latest_checkpoint(run_copy, caplog):
  metadata = run_copy / 'checkpoints' / '3' / 'state' / '_METADATA'
  metadata.write_bytes(metadata.read_bytes()[:40])
  config = tiny_config()
  config.num_train_steps = 4
  with caplog.at_level('WARNING'):
    train.train_and_evaluate(config, str(run_copy))
  assert 'The checkpoint of step 3' in caplog.text and 'cannot be read' in caplog.text
  # Resumed from step 2: steps 3 and 4 logged again; the damaged folder kept aside.
  steps = [json.loads(line)['step'] for line in open(run_copy / 'metrics.jsonl')]
  assert steps == [1, 2, 3, 3, 4]
  assert sorted(int(d) for d in os.listdir(run_copy / 'checkpoints') if d.isdigit()) == [2, 4]
  [moved] = os.listdir(run_copy / 'unreadable_checkpoints')
  assert moved.startswith('3-')
  assert (run_copy / 'unreadable_checkpoints' / moved / 'state' / '_METADATA').stat().st_size == 40
  assert not (run_copy / 'lock').exists()


def test_incompatible_resume_is_refused_and_changes_nothing(run_copy):
  before = _tree(run_copy)
  config = tiny_config()
  saved = config.model.num_parts   # the run was trained with the tiny config's default
  assert saved != 10
  config.model.num_parts = 10
  config.num_train_steps = 5
  with pytest.raises(checkpointing.CheckpointMismatchError,
                     match=rf'params/connectivity/logits: float32\[{saved}, {saved}\] saved, '
                           r'float32\[10, 10\] built'):
    train.train_and_evaluate(config, str(run_copy))
  assert _tree(run_copy) == before
  done = subprocess.run(
      [sys.executable, '-m', 'ppl_jax.main', '--config=configs/synthetic.py:tiny',
       f'--workdir={run_copy}', '--config.num_train_steps=5', '--config.model.num_parts=10'],
      cwd=REPO, capture_output=True, text=True, timeout=300, check=False)
  assert done.returncode == cli.EXIT_USER_ERROR, done.stderr[-2000:]
  [line] = [l for l in done.stderr.splitlines() if 'error:' in l]
  assert 'holds another model than the config builds' in line
  assert 'model.num_parts=10' in line and 'config.json' in line
  assert 'Traceback' not in done.stderr
  assert _tree(run_copy) == before


def test_evaluate_out_dir_leaves_the_workdir_untouched(run_copy, tmp_path, object_store):
  before = _tree(run_copy)
  out = tmp_path / 'elsewhere' / 'report'
  report = evaluate.evaluate(str(run_copy), out_dir=str(out), max_eval_frames=4,
                             skip_occlusion=True, skip_regression=True)
  assert json.loads((out / 'report.json').read_text()) == json.loads(json.dumps(report))
  assert (out / 'report.md').exists()
  assert _tree(run_copy) == before
  assert sorted(os.listdir(out.parent)) == ['report']   # no staging folder left
  # A gs:// --out_dir gets the same report and figures.
  url, root = object_store
  evaluate.evaluate(str(run_copy), out_dir=url, max_eval_frames=4, skip_occlusion=True,
                    skip_regression=True)
  assert (json.loads((root / 'report.json').read_text())['results']
          == json.loads(json.dumps(report))['results'])
  assert sorted(_tree(root)) == sorted(_tree(out))
  assert _tree(run_copy) == before
  # A folder holding other files is not replaced.
  (tmp_path / 'mine').mkdir()
  (tmp_path / 'mine' / 'notes.txt').write_text('keep')
  with pytest.raises(FileExistsError, match='holds files other than an evaluation report'):
    evaluate.evaluate(str(run_copy), out_dir=str(tmp_path / 'mine'))
  assert _tree(tmp_path / 'mine') == {'notes.txt': b'keep'}


def test_url_workdir_lock_config_and_report_folder(object_store):
  # gs://... through etils.epath (here on a local folder with an object store's limits).
  url, root = object_store
  config = tiny_config()
  with workdir_lib.lock(url):
    assert json.loads((root / 'lock').read_text())['pid'] == os.getpid()
    with pytest.raises(workdir_lib.WorkdirLockedError, match=f'PID {os.getpid()}'):
      with workdir_lib.lock(url):
        pass
    workdir_lib.write_config(url, config)
  assert sorted(os.listdir(root)) == ['config.json', 'provenance.json']   # lock released
  assert (workdir_lib.load_config(url).to_json_best_effort()
          == config.to_json_best_effort())
  assert workdir_lib.read_provenance(url) == json.loads((root / 'provenance.json').read_text())

  final = f'{url}/eval'
  with workdir_lib.staged_folder(final) as staging:
    os.makedirs(os.path.join(staging, 'figures'))
    open(os.path.join(staging, 'figures', 'a.png'), 'wb').write(b'png')
    open(os.path.join(staging, 'report.json'), 'w').write('first')
  assert _tree(root / 'eval') == {'report.json': b'first', os.path.join('figures', 'a.png'): b'png'}
  with pytest.raises(RuntimeError, match='evaluation failed'):
    with workdir_lib.staged_folder(final) as staging:
      open(os.path.join(staging, 'report.json'), 'w').write('second')
      raise RuntimeError('evaluation failed')
  assert _tree(root / 'eval')[('report.json')] == b'first'   # the previous report stays
  with workdir_lib.staged_folder(final) as staging:
    open(os.path.join(staging, 'report.json'), 'w').write('third')
  assert _tree(root / 'eval') == {'report.json': b'third'}
  assert sorted(os.listdir(root)) == ['config.json', 'eval', 'provenance.json']   # no staging
  assert not os.path.exists(staging)
