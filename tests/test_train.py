"""Training: train-state layout, determinism, frozen priors, NaN stop, end to end."""

import copy
import itertools
import json
import os
import signal
import subprocess
import sys
import time

import grain
import jax
import numpy as np
import pytest

from ppl_jax import checkpointing
from ppl_jax import config as config_lib
from ppl_jax import inference
from ppl_jax import input_pipeline
from ppl_jax import metric_writers
from ppl_jax import sharding
from ppl_jax import train
from ppl_jax import workdir as workdir_lib
from ppl_jax.models.ppl import PPL

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _tiny(**overrides):
  config = config_lib.default_config()
  config_lib.make_tiny(config)
  for key, value in overrides.items():
    node = config
    *parents, leaf = key.split('.')
    for p in parents:
      node = node[p]
    node[leaf] = value
  return config


def _run_steps(config, setup, num_steps):
  """Fresh init and data stream; (losses, state) after num_steps."""
  source = input_pipeline.build_source(config.data, 'train')
  it = iter(input_pipeline.create_train_dataset(config, source, seed=config.seed))
  state = setup.init()
  losses = []
  for _ in range(num_steps):
    batch = sharding.shard_batch(next(it), setup.mesh)
    state, metrics = setup.train_step(state, batch, setup.vgg_params)
    losses.append(float(metrics['loss']))
  return losses, state


@pytest.fixture(scope='module')
def tiny_setup():
  config = _tiny()
  return config, train.create_train_setup(config, sharding.make_mesh())


@pytest.mark.slow
def test_state_layout_and_determinism(tiny_setup):
  config, setup = tiny_setup
  initial = jax.device_get(setup.init())
  assert set(initial) == {'params', 'batch_stats', 'memory', 'opt_state', 'step', 'rng'}
  assert 'codebook' in initial['memory']['memory']          # EMA state, not params
  assert 'memory' not in initial['params']
  assert initial['params']['connectivity']['logits'].shape == (16, 16)
  losses_a, state_a = _run_steps(config, setup, 3)
  losses_b, state_b = _run_steps(config, setup, 3)
  assert np.all(np.isfinite(losses_a))
  assert losses_a == losses_b                               # bitwise, step for step
  for a, b in zip(jax.tree_util.tree_leaves(jax.device_get(state_a)),
                  jax.tree_util.tree_leaves(jax.device_get(state_b))):
    np.testing.assert_array_equal(a, b)
  state_a = jax.device_get(state_a)
  assert int(state_a['step']) == 3
  # The EMA step moved the codebook; the optimizer moved params.
  assert not np.array_equal(state_a['memory']['memory']['codebook'],
                            initial['memory']['memory']['codebook'])
  assert not np.array_equal(state_a['params']['connectivity']['logits'],
                            initial['params']['connectivity']['logits'])


@pytest.mark.slow
def test_frozen_priors_stay_put():
  config = _tiny()
  config_lib.apply_prior_variant(config, 4)   # predefined, both frozen
  setup = train.create_train_setup(config, sharding.make_mesh())
  initial = jax.device_get(setup.init())
  _, state = _run_steps(config, setup, 2)
  state = jax.device_get(state)
  for name, leaf in (('keypoint_prior', 'points'), ('connectivity', 'logits')):
    np.testing.assert_array_equal(state['params'][name][leaf], initial['params'][name][leaf])
  moved = [not np.array_equal(a, b) for a, b in zip(
      jax.tree_util.tree_leaves(state['params']['encoder']),
      jax.tree_util.tree_leaves(initial['params']['encoder']))]
  assert any(moved)


class _StopAt:
  """A PreemptionWatcher stand-in whose stop request arrives before step `step` + 1."""

  def __init__(self, step):
    self.calls, self.step, self.received = 0, step, 'SIGTERM'

  def should_stop(self):
    self.calls += 1
    return self.calls > self.step


@pytest.mark.slow
@pytest.mark.parametrize('noticed', ['at the log step', 'by a SIGTERM at step 7'])
def test_nonfinite_step_halts_and_saves_the_last_finite_state(tiny_setup, tmp_path, noticed):
  """A NaN batch at step 5 of a run that syncs only every 10 steps (or gets SIGTERM at step
  7): the run stops naming step 5 and saves the state of step 4, equal to four clean steps
  run independently."""
  config, setup = tiny_setup
  config = copy.deepcopy(config)
  config.log_every_steps = 10
  config.num_train_steps = 20
  source = input_pipeline.build_source(config.data, 'train')
  clean = list(itertools.islice(
      iter(input_pipeline.create_train_dataset(config, source, seed=config.seed)), 12))
  poisoned = [dict(b) for b in clean]
  poisoned[4]['image'] = np.full_like(poisoned[4]['image'], np.nan)
  data_iter = iter(grain.MapDataset.source(poisoned).to_iter_dataset())
  ckpt = checkpointing.Checkpointer(str(tmp_path / 'checkpoints'), every_steps=100, keep=2,
                                    use_async=False)
  writer = metric_writers.MetricWriter(str(tmp_path))
  sigterm = noticed.startswith('by')
  watcher = _StopAt(7) if sigterm else checkpointing.PreemptionWatcher()
  with pytest.raises(FloatingPointError,
                     match=f'at step 5 .noticed at step {7 if sigterm else 10}.*state of step 4'):
    train._train_loop(config, setup, setup.init(), 0, data_iter, ckpt, writer, watcher)
  writer.close()
  assert ckpt.latest_step() == 4
  _, saved, _ = ckpt.restore(setup.abstract_state, iter(grain.MapDataset.source(poisoned)
                                                        .to_iter_dataset()))
  ckpt.close()
  state = setup.init()
  for batch in clean[:4]:
    state, _ = setup.train_step(state, sharding.shard_batch(batch, setup.mesh),
                                setup.vgg_params)
  for (path, want), got in zip(jax.tree_util.tree_flatten_with_path(jax.device_get(state))[0],
                               jax.tree_util.tree_leaves(jax.device_get(saved))):
    np.testing.assert_array_equal(got, want, err_msg=jax.tree_util.keystr(path))
  assert not (tmp_path / 'metrics.jsonl').exists() or not (tmp_path / 'metrics.jsonl').read_text()


def test_nan_stops_with_message():
  with pytest.raises(FloatingPointError, match='step 7.*loss'):
    train._check_finite(7, {'loss': float('nan'), 'image_loss': 1.0})
  train._check_finite(7, {'loss': 1.0})


# --- end to end through `python -m ppl_jax.main` ------------------------------------


@pytest.fixture(scope='module')
def jit_cache(tmp_path_factory):
  """A persistent compilation cache shared by this module's subprocess runs."""
  return tmp_path_factory.mktemp('jit_cache')


def _env(cache_dir):
  env = dict(os.environ)
  env.update(JAX_COMPILATION_CACHE_DIR=str(cache_dir),
             JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS='0',
             JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES='0',
             PYTHONPATH=REPO + os.pathsep + env.get('PYTHONPATH', ''))
  env.pop('XLA_FLAGS', None)
  return env


def _command(workdir, *overrides):
  return [sys.executable, '-m', 'ppl_jax.main', '--config=configs/synthetic.py:tiny',
          f'--workdir={workdir}', *overrides]


def _losses(workdir):
  """{step: loss}, the last line of each step (a resumed run repeats some)."""
  out = {}
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    for line in f:
      record = json.loads(line)
      if 'loss' in record:
        out[record['step']] = record['loss']
  return out


def _last_logged_step(workdir):
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    return json.loads(f.readlines()[-1])['step']


def _checkpoint_steps(workdir):
  folder = os.path.join(workdir, 'checkpoints')
  if not os.path.isdir(folder):
    return []
  return sorted(int(d) for d in os.listdir(folder) if d.isdigit())


def _wait_for(predicate, process, timeout=300):
  start = time.time()
  while not predicate():
    if process.poll() is not None:
      raise AssertionError(f'run ended (rc {process.returncode}) before the condition')
    if time.time() - start > timeout:
      process.kill()
      raise AssertionError('timed out')
    time.sleep(0.05)


@pytest.mark.slow
def test_main_end_to_end_prints_evaluation(tmp_path, jit_cache):
  result = subprocess.run(_command(tmp_path / 'run'), cwd=REPO, env=_env(jit_cache),
                          capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, result.stderr[-3000:]
  assert 'matched error' in result.stdout and 'mean training pose' in result.stdout
  results = json.load(open(tmp_path / 'run' / 'eval.json'))
  # The end-of-run numbers, re-derived from the final checkpoint: predictions on the first
  # eval_max_batches * eval_batch_size test frames read straight from the source, then the
  # mean L2 of the reported assignment in units of the image side x 100.
  restored = inference.restore(workdir_lib.load_config(str(tmp_path / 'run')), str(tmp_path / 'run'))
  config = restored.config
  source = input_pipeline.build_source(config.data, 'test')
  frames = [(v, t) for v in range(source.num_videos) for t in range(source.num_frames(v))]
  frames = frames[:config.eval_max_batches * config.eval_batch_size]
  size = config.data.image_size
  images = np.stack([input_pipeline.resize_uint8(source.frame(v, t), size) for v, t in frames])
  images = images.astype(np.float32) / 127.5 - 1
  truth = np.stack([(2.0 * source.labels(v, t).keypoints + 1) / source.size - 1
                    for v, t in frames])
  predicted, _ = restored.model.apply(restored.variables, images, train=False,
                                            method=PPL.estimate)
  assignment = np.asarray(results['assignment'])
  distance = np.linalg.norm(np.asarray(predicted, np.float64)[:, assignment] - truth, axis=-1)
  np.testing.assert_allclose(results['matched_error'], 100 * distance.mean() / 2, rtol=1e-4)
  assert results['num_frames'] == len(frames)
  assert results['mean_pose_matched_error'] > 0
  assert sorted(_losses(tmp_path / 'run')) == [1, 2, 3]
  assert _checkpoint_steps(tmp_path / 'run') == [2, 3]
  assert os.listdir(tmp_path / 'run' / 'tensorboard')
  # Asking for fewer steps than the workdir's checkpoint holds is refused, changing nothing.
  before = {name: (tmp_path / 'run' / name).read_bytes()
            for name in ('config.json', 'provenance.json', 'metrics.jsonl', 'eval.json')}
  refused = subprocess.run(_command(tmp_path / 'run', '--config.num_train_steps=2'), cwd=REPO,
                           env=_env(jit_cache), capture_output=True, text=True, timeout=600)
  assert refused.returncode != 0
  assert 'config.num_train_steps=2 is below the step of the latest checkpoint' in refused.stderr
  assert {name: (tmp_path / 'run' / name).read_bytes() for name in before} == before
  assert _checkpoint_steps(tmp_path / 'run') == [2, 3]


@pytest.mark.slow
def test_kill_and_resume_reproduce_uninterrupted_run(tmp_path, jit_cache):
  """SIGKILL, resume, SIGTERM (checkpoint at the last step), resume to the end."""
  steps = 40
  overrides = [f'--config.num_train_steps={steps}', '--config.checkpoint_every_steps=5',
               '--config.eval_at_end=false', '--config.keep_checkpoints=2']
  env = _env(jit_cache)
  reference = tmp_path / 'reference'
  subprocess.run(_command(reference, *overrides), cwd=REPO, env=env, check=True,
                 capture_output=True, timeout=600)
  expected = _losses(reference)
  assert sorted(expected) == list(range(1, steps + 1))

  run = tmp_path / 'run'
  # 1. SIGKILL once the first checkpoint is complete.
  process = subprocess.Popen(_command(run, *overrides), cwd=REPO, env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  _wait_for(lambda: _checkpoint_steps(run), process)
  process.send_signal(signal.SIGKILL)
  process.wait()
  killed_at = max(_losses(run))
  assert killed_at < steps, 'the run finished before it could be killed'
  # 2. Resume; SIGTERM once it has logged a few steps beyond its restart.
  restart = max(_checkpoint_steps(run))
  process = subprocess.Popen(_command(run, *overrides), cwd=REPO, env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
  _wait_for(lambda: len(open(run / 'metrics.jsonl').readlines()) >= killed_at + 2,
            process)
  process.send_signal(signal.SIGTERM)
  _, stderr = process.communicate(timeout=300)
  assert process.returncode == 0, stderr[-3000:]
  assert f'Resuming at step {restart}' in stderr
  terminated_at = _last_logged_step(run)
  assert terminated_at < steps, 'the run finished before SIGTERM'
  assert max(_checkpoint_steps(run)) == terminated_at  # saved at its last step
  # 3. Resume to the end: every step's loss equals the uninterrupted run's.
  subprocess.run(_command(run, *overrides), cwd=REPO, env=env, check=True,
                 capture_output=True, timeout=600)
  assert _losses(run) == expected
