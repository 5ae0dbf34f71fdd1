"""Checkpointer (state + grain iterator), preemption flag, metric writers, pose drawing."""

import json
import os
import signal
import struct

import grain
import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image
import pytest

from ppl_jax import checkpointing
from ppl_jax import metric_writers
from ppl_jax.evaluation import figures
from ppl_jax import sharding


def _dataset():
  return (grain.MapDataset.range(20).seed(3).shuffle().repeat(None)
          .to_iter_dataset().batch(2))


def _state(value):
  return {'params': {'w': jnp.full((3, 2), value, jnp.float32)},
          'step': jnp.asarray(int(value), jnp.int32),
          'rng': jax.random.PRNGKey(int(value))}


def test_save_restore_state_and_iterator(tmp_path):
  ckpt = checkpointing.Checkpointer(str(tmp_path), every_steps=2, keep=2)
  it = iter(_dataset())
  batches = []
  for step in range(1, 6):
    batches.append(next(it))
    ckpt.save(step, _state(step), it)
  ckpt.save(5, _state(5), it, force=True)
  expected_next = [next(it) for _ in range(3)]
  ckpt.close()
  # Interval 2 -> 2, 4; forced final 5; keep the last 2.
  ckpt = checkpointing.Checkpointer(str(tmp_path), every_steps=2, keep=2)
  assert sorted(ckpt.manager.all_steps()) == [4, 5]
  mesh = sharding.make_mesh()
  abstract = jax.tree_util.tree_map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding.replicated(mesh)),
      _state(0))
  it2 = iter(_dataset())
  step, restored, skipped = ckpt.restore(abstract, it2)
  assert (step, skipped) == (5, [])
  np.testing.assert_array_equal(np.asarray(restored['params']['w']), 5.0)
  assert int(restored['step']) == 5
  np.testing.assert_array_equal(np.asarray(restored['rng']), np.asarray(jax.random.PRNGKey(5)))
  for batch in expected_next:
    np.testing.assert_array_equal(next(it2), batch)
  # An older step restores too, with the iterator where it was then.
  it3 = iter(_dataset())
  _, restored, _ = ckpt.restore(abstract, it3, step=4)
  assert int(restored['step']) == 4
  np.testing.assert_array_equal(next(it3), batches[4])
  ckpt.close()


def _truncate(path):
  with open(path, 'r+b') as f:
    f.truncate(os.path.getsize(path) // 2)


def _damage(step_dir, part):
  """Truncates one file of a saved checkpoint folder, as a full disk or a killed copy does."""
  if part == 'data blob':
    blobs = sorted(os.path.join(root, name)
                   for root, _, names in os.walk(os.path.join(step_dir, 'state'))
                   for name in names if os.path.basename(root) == 'd')
    for blob in blobs:
      _truncate(blob)
  elif part == '_METADATA':
    _truncate(os.path.join(step_dir, 'state', '_METADATA'))
  else:
    _truncate(os.path.join(step_dir, 'data_iter', 'process_0-of-1.json'))


def _abstract():
  mesh = sharding.make_mesh()
  return jax.tree_util.tree_map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding.replicated(mesh)),
      _state(0))


def _save_four_steps(directory):
  """Checkpoints 2 and 4 of a 4-step run in `directory`; the batches of steps 1-4."""
  ckpt = checkpointing.Checkpointer(str(directory), every_steps=2, keep=3)
  it = iter(_dataset())
  batches = []
  for step in range(1, 5):
    batches.append(next(it))
    ckpt.save(step, _state(step), it)
  ckpt.close()
  return batches


@pytest.mark.parametrize('part', ['data blob', '_METADATA', 'data-iterator JSON'])
def test_restore_falls_back_past_a_damaged_checkpoint(tmp_path, part, caplog):
  batches = _save_four_steps(tmp_path)
  _damage(str(tmp_path / '4'), part)
  ckpt = checkpointing.Checkpointer(str(tmp_path), every_steps=2, keep=3)
  it2 = iter(_dataset())
  with caplog.at_level('WARNING'):
    step, restored, skipped = ckpt.restore(_abstract(), it2)
  ckpt.close()
  assert (step, skipped) == (2, [4])
  assert int(restored['step']) == 2
  np.testing.assert_array_equal(np.asarray(restored['params']['w']), 2.0)
  np.testing.assert_array_equal(next(it2), batches[2])   # the iterator of step 2
  assert any('step 4' in r.getMessage() and 'cannot be read' in r.getMessage()
             for r in caplog.records)


def test_restore_names_the_folder_when_no_checkpoint_reads(tmp_path):
  _save_four_steps(tmp_path)
  _damage(str(tmp_path / '2'), 'data blob')
  _damage(str(tmp_path / '4'), '_METADATA')
  ckpt = checkpointing.Checkpointer(str(tmp_path), every_steps=2, keep=3)
  with pytest.raises(checkpointing.UnreadableCheckpointError) as error:
    ckpt.restore(_abstract(), iter(_dataset()))
  ckpt.close()
  message = str(error.value)
  assert 'step 4:' in message and 'step 2:' in message
  assert f'remove {tmp_path}' in message
  assert '\n' not in message


@pytest.mark.parametrize('signum', checkpointing.PreemptionWatcher.SIGNALS)
def test_sigterm_and_sigint_set_flag(signum):
  watcher = checkpointing.PreemptionWatcher()
  previous = signal.getsignal(signum)
  watcher.install()
  try:
    assert not watcher.should_stop()
    os.kill(os.getpid(), signum)
    assert watcher.should_stop()
    assert watcher.received == signal.Signals(signum).name
    if signum == signal.SIGINT:
      # A second Ctrl-C interrupts at once.
      with pytest.raises(KeyboardInterrupt):
        os.kill(os.getpid(), signum)
  finally:
    watcher.uninstall()
  assert signal.getsignal(signum) is previous


def _read_events(path):
  """Scalar (tag, step, value) from a TFRecord event file (format: len, crc, data, crc)."""
  from tensorboardX.proto import event_pb2  # pylint: disable=g-import-not-at-top
  out, images = [], []
  with open(path, 'rb') as f:
    data = f.read()
  i = 0
  while i < len(data):
    (length,) = struct.unpack('<Q', data[i:i + 8])
    event = event_pb2.Event.FromString(data[i + 12:i + 12 + length])
    i += 12 + length + 4
    for value in event.summary.value:
      if value.HasField('image'):
        images.append((value.tag, event.step))
      else:
        out.append((value.tag, event.step, value.simple_value))
  return out, images


@pytest.mark.parametrize('where', ['local', 'object_store'])
def test_metric_writer(tmp_path, object_store, where):
  # An object store (gs://, no appending) gets the same files as a local workdir.
  workdir, root = (str(tmp_path), tmp_path) if where == 'local' else object_store
  writer = metric_writers.MetricWriter(workdir, enabled=True)
  writer.write_scalars(1, {'loss': 2.5, 'lr': np.float32(0.125)})
  writer.write_scalars(2, {'loss': 1.5})
  image = np.arange(8 * 6 * 3, dtype=np.uint8).reshape(8, 6, 3)
  writer.write_images(2, {'summary': image})
  writer.close()
  lines = [json.loads(l) for l in open(root / 'metrics.jsonl')]
  assert lines == [{'step': 1, 'loss': 2.5, 'lr': 0.125}, {'step': 2, 'loss': 1.5}]
  (event_file,) = os.listdir(root / 'tensorboard')
  scalars, images = _read_events(root / 'tensorboard' / event_file)
  assert sorted(scalars) == [('loss', 1, 2.5), ('loss', 2, 1.5), ('lr', 1, 0.125)]
  assert images == [('summary', 2)]
  np.testing.assert_array_equal(np.asarray(Image.open(root / 'images' / 'summary_0000002.png')),
                                image)
  # A resumed run continues metrics.jsonl.
  writer = metric_writers.MetricWriter(workdir, enabled=True)
  writer.write_scalars(3, {'loss': 0.5})
  writer.close()
  assert [json.loads(l)['step'] for l in open(root / 'metrics.jsonl')] == [1, 2, 3]


def test_draw_pose_intensity_follows_weight():
  image = np.zeros((32, 32, 3), np.uint8)
  # Keypoints at pixel centres (x, y) = (4, 4), (27, 4), (4, 27): [-1, 1] via (2p+1)/W-1.
  pixels = np.array([[4, 4], [27, 4], [4, 27]], np.float64)
  keypoints = (2 * pixels + 1) / 32 - 1
  weights = np.array([[0, 1.0, 0.5], [1.0, 0, 0], [0.5, 0, 0]])
  out = metric_writers.draw_pose(image, keypoints, weights)
  # Link 0-1 (w = max) is drawn opaque along row 4; link 0-2 at half opacity along
  # column 4; link 1-2 (w = 0) is absent: black at the midpoint of 1-2.
  link = 255 * np.array(figures.LINK_COLOR)
  np.testing.assert_allclose(out[4, 16], link, atol=1)
  np.testing.assert_allclose(out[16, 4], link / 2, atol=1)
  np.testing.assert_array_equal(out[16, 16], [0, 0, 0])
  assert out[4, 4].any()  # keypoint dot


def test_pose_summary_shape():
  batch = {'image': np.zeros((2, 16, 16, 3)), 'reference': np.zeros((2, 16, 16, 3))}
  outputs = {'recon': np.zeros((2, 16, 16, 3)), 'heatmap': np.ones((2, 16, 16)),
             'keypoints': np.zeros((2, 3, 2)), 'connectivity': np.ones((3, 3))}
  grid = metric_writers.pose_summary(batch, outputs, scale=2)
  assert grid.shape == (2 * 32, 5 * 32, 3) and grid.dtype == np.uint8
