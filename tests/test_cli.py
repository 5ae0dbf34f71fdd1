"""User mistakes on the command line: one line on stderr naming the culprit, exit code 2,
no traceback unless --verbose."""

import os
import subprocess
import sys

import pytest

from ppl_jax import cli

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(module, *args):
  env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get('PYTHONPATH', ''))
  return subprocess.run([sys.executable, '-m', module, *args], cwd=REPO, env=env,
                        capture_output=True, text=True, timeout=300)


def _error_lines(stderr):
  return [line for line in stderr.splitlines() if ': error: ' in line]


@pytest.mark.parametrize('arg, culprit', [
    ('--config.foo=1', "--config.foo: the config has no field 'foo'"),
    ('--config.model.nmu_parts=3', "no field 'nmu_parts' (Did you mean 'num_parts'?)"),
    ('--config.model.num_parts=ten', '--config.model.num_parts=ten'),
    ('--config.model.num_parts=0', 'config.model.num_parts = 0'),
    ('--bogus=1', "Unknown command line flag 'bogus'"),
])
def test_main_user_mistakes_are_one_line(tmp_path, arg, culprit):
  result = _run('ppl_jax.main', '--config=configs/synthetic.py:tiny',
                f'--workdir={tmp_path / "run"}', arg)
  assert result.returncode == cli.EXIT_USER_ERROR, result.stderr[-2000:]
  assert 'Traceback' not in result.stderr
  lines = _error_lines(result.stderr)
  assert len(lines) == 1 and lines[0].startswith('ppl_jax.main: error: ')
  assert culprit in lines[0]
  assert not (tmp_path / 'run').exists()   # nothing written


def test_verbose_shows_the_traceback(tmp_path):
  result = _run('ppl_jax.main', '--config=configs/synthetic.py:tiny',
                f'--workdir={tmp_path / "run"}', '--config.model.num_parts=0', '--verbose')
  assert result.returncode != 0
  assert 'Traceback' in result.stderr and 'num_parts' in result.stderr


def test_evaluate_and_predict_missing_workdir(tmp_path):
  for module in ('ppl_jax.evaluate', 'ppl_jax.predict'):
    args = [f'--workdir={tmp_path / "missing"}']
    if module == 'ppl_jax.predict':
      (tmp_path / 'clip.mp4').write_bytes(b'')
      args += [f'--video={tmp_path / "clip.mp4"}', f'--out={tmp_path / "out.csv"}']
    result = _run(module, *args)
    assert result.returncode == cli.EXIT_USER_ERROR, (module, result.stderr[-2000:])
    assert 'Traceback' not in result.stderr
    lines = _error_lines(result.stderr)
    assert len(lines) == 1 and str(tmp_path / 'missing') in lines[0], (module, lines)
