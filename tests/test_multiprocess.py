"""Two processes (jax.distributed on localhost, gloo CPU collectives) train together.

Processes get JAX_COORDINATOR_ADDRESS / JAX_NUM_PROCESSES / JAX_PROCESS_ID, as a
launcher would set them. (1) A script feeds each process its half of the same
global batches a single process trains on: losses and the end-of-run evaluation
must agree. (2) `python -m ppl_jax.main` runs to completion on two processes,
checkpointing (orbax, multi-process) and evaluating, with only process 0 writing.
"""

import json
import os
import socket
import subprocess
import sys
import textwrap

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

_SCRIPT = textwrap.dedent('''
    import json
    import jax
    import numpy as np
    from ppl_jax import config as config_lib, input_pipeline, sharding, train

    sharding.maybe_initialize_distributed()
    config = config_lib.default_config()
    config_lib.make_tiny(config)
    config.data.synthetic.num_test_videos = 1
    config_lib.validate(config)
    mesh = sharding.make_mesh()
    setup = train.create_train_setup(config, mesh)
    source = input_pipeline.build_source(config.data, 'train')
    # The global stream (process_count=1) on every process; each keeps its rows.
    stream = iter(input_pipeline.create_train_dataset(config, source, seed=0))
    state, losses = setup.init(), []
    n, i = jax.process_count(), jax.process_index()
    for _ in range(3):
      batch = {k: np.split(v, n)[i] for k, v in next(stream).items()}
      state, metrics = setup.train_step(state, sharding.shard_batch(batch, mesh),
                                        setup.vgg_params)
      losses.append(float(metrics['loss']))
    results = train.evaluate(config, setup, state, source)
    if i == 0:
      print('RESULT ' + json.dumps({'losses': losses,
                                    'error': results['matched_error']}))
''')


def _free_port():
  with socket.socket() as s:
    s.bind(('localhost', 0))
    return s.getsockname()[1]


def _env(**extra):
  env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get('PYTHONPATH', ''),
             **extra)
  env.pop('XLA_FLAGS', None)
  return env


def _launch_two(command):
  address = f'localhost:{_free_port()}'
  processes = [
      subprocess.Popen(command, cwd=REPO,
                       env=_env(JAX_COORDINATOR_ADDRESS=address, JAX_NUM_PROCESSES='2',
                                JAX_PROCESS_ID=str(i)),
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
      for i in range(2)]
  outputs = [p.communicate(timeout=900) for p in processes]
  for p, (_, err) in zip(processes, outputs):
    assert p.returncode == 0, err[-4000:]
  return outputs


def _result(stdout):
  (line,) = [l for l in stdout.splitlines() if l.startswith('RESULT ')]
  return json.loads(line[len('RESULT '):])


@pytest.mark.slow
def test_two_processes_match_one():
  command = [sys.executable, '-c', _SCRIPT]
  outputs = _launch_two(command)
  single = subprocess.run(command, cwd=REPO, env=_env(), capture_output=True, text=True,
                          timeout=900)
  assert single.returncode == 0, single.stderr[-4000:]
  multi, one = _result(outputs[0][0]), _result(single.stdout)
  assert 'RESULT' not in outputs[1][0]
  np.testing.assert_allclose(multi['losses'], one['losses'], rtol=1e-5)
  np.testing.assert_allclose(multi['error'], one['error'], rtol=1e-4)


@pytest.mark.slow
def test_main_on_two_processes(tmp_path):
  outputs = _launch_two([
      sys.executable, '-m', 'ppl_jax.main', '--config=configs/synthetic.py:tiny',
      f'--workdir={tmp_path}', '--config.data.synthetic.num_test_videos=1'])
  assert 'process 1 / 2' in outputs[1][1]
  # Only process 0 prints the evaluation and writes metrics.
  assert 'matched error' in outputs[0][0] and 'matched error' not in outputs[1][0]
  steps = [json.loads(l)['step'] for l in open(tmp_path / 'metrics.jsonl')]
  assert steps == [1, 2, 3, 3]  # three train steps, then the evaluation
  assert sorted(os.listdir(tmp_path / 'checkpoints')) == ['2', '3']
  iterator_files = os.listdir(tmp_path / 'checkpoints' / '3' / 'data_iter')
  assert {'process_0-of-2.json', 'process_1-of-2.json'} <= set(iterator_files)
