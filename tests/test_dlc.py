"""Tests of the DeepLabCut CSV reader/writer and LabeledFramesSource."""

import logging
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ppl_jax.data import dlc
from ppl_jax.data.errors import DataError


def shared_dir() -> Path:
  env = os.environ.get('PPL_SHARED_DIR')
  return Path(env) if env else Path(__file__).resolve().parents[2] / 'shared'


OLD_LAYOUT = (
    'scorer,me,me,me,me\n'
    'bodyparts,nose,nose,tail,tail\n'
    'coords,x,y,x,y\n'
    'labeled-data/vid/img001.png,10.5,20.25,3,4\n'
    'labeled-data/vid/img002.png,,,7.125,8\n')

NEW_LAYOUT = (
    'scorer,,,me,me,me,me\n'
    'bodyparts,,,nose,nose,tail,tail\n'
    'coords,,,x,y,x,y\n'
    'labeled-data,vid,img001.png,10.5,20.25,3,4\n'
    'labeled-data,vid,img002.png,,,7.125,8\n')


@pytest.mark.parametrize('text', [OLD_LAYOUT, NEW_LAYOUT], ids=['one_index_column', 'three_index_columns'])
def test_read_exact_values(tmp_path, text):
  path = tmp_path / 'CollectedData_me.csv'
  path.write_text(text)
  labels = dlc.read_dlc_csv(path)
  assert labels.scorer == 'me'
  assert labels.bodyparts == ['nose', 'tail']
  assert labels.image_paths == ['labeled-data/vid/img001.png', 'labeled-data/vid/img002.png']
  assert labels.keypoints.tolist() == [[[10.5, 20.25], [3, 4]], [[0, 0], [7.125, 8]]]
  assert labels.visible.tolist() == [[True, True], [False, True]]
  assert labels.likelihood is None


def test_multi_animal_and_likelihood(tmp_path):
  path = tmp_path / 'a.csv'
  path.write_text('scorer,s,s,s,s,s,s\n'
                  'individuals,m1,m1,m1,m2,m2,m2\n'
                  'bodyparts,nose,nose,nose,nose,nose,nose\n'
                  'coords,x,y,likelihood,x,y,likelihood\n'
                  '0,1,2,0.5,3,4,0.25\n')
  labels = dlc.read_dlc_csv(path)
  assert labels.bodyparts == ['m1/nose', 'm2/nose']
  assert labels.keypoints.tolist() == [[[1, 2], [3, 4]]]
  assert labels.likelihood.tolist() == [[0.5, 0.25]]


@pytest.mark.parametrize('with_likelihood', [False, True])
def test_write_read_roundtrip(tmp_path, with_likelihood):
  rng = np.random.default_rng(0)
  keypoints = rng.uniform(0, 400, (4, 3, 2))
  visible = rng.uniform(size=(4, 3)) > 0.3
  likelihood = rng.uniform(size=(4, 3)) if with_likelihood else None
  path = tmp_path / 'out.csv'
  dlc.write_dlc_csv(path, [0, 1, 2, 3], keypoints, ['a', 'b', 'c'], visible=visible,
                    likelihood=likelihood, scorer='ppl')
  header = path.read_text().splitlines()[:3]
  coords = ['x', 'y', 'likelihood'] if with_likelihood else ['x', 'y']
  assert header[2] == ','.join(['coords'] + coords * 3)
  assert header[1].startswith('bodyparts,a,a,')
  back = dlc.read_dlc_csv(path)
  assert back.image_paths == ['0', '1', '2', '3'] and back.bodyparts == ['a', 'b', 'c']
  np.testing.assert_array_equal(back.visible, visible)
  np.testing.assert_allclose(back.keypoints, np.where(visible[..., None], keypoints, 0),
                             rtol=1e-6)
  if with_likelihood:
    np.testing.assert_allclose(back.likelihood, likelihood, rtol=1e-6)


def test_bad_csv_messages(tmp_path):
  path = tmp_path / 'CollectedData_x.csv'
  path.write_text(OLD_LAYOUT + 'labeled-data/vid/img003.png,1,2,3\n')
  with pytest.raises(DataError, match=r'CollectedData_x\.csv, line 6: 4 cells, expected 5'):
    dlc.read_dlc_csv(path)
  path.write_text(OLD_LAYOUT.replace('7.125', 'abc'))
  with pytest.raises(DataError, match=r'line 5, column 4 \(tail x\): .abc. is not a number'):
    dlc.read_dlc_csv(path)
  path.write_text('image,x,y\nimg.png,1,2\n')
  with pytest.raises(DataError, match='CollectedData_x.csv: header rows.*DeepLabCut'):
    dlc.read_dlc_csv(path)
  with pytest.raises(DataError, match='labels file not found'):
    dlc.read_dlc_csv(tmp_path / 'nope.csv')


def make_project(root: Path):
  """A DeepLabCut-like project: labels CSV inside labeled-data/vid/, paths relative to root."""
  for name, value in (('img001.png', 10), ('img002.png', 20), ('img003.png', 30)):
    image = root / 'labeled-data' / 'vid' / name
    image.parent.mkdir(parents=True, exist_ok=True)
    Image.new('RGB', (9, 7), (value, value, value)).save(image)
  csv = root / 'labeled-data' / 'vid' / 'CollectedData_me.csv'
  csv.write_text(OLD_LAYOUT)
  return csv


def test_labeled_frames_source(tmp_path):
  csv = make_project(tmp_path)
  source = dlc.LabeledFramesSource(csv)
  assert Path(source.image_root) == tmp_path.resolve()
  assert source.num_videos == 2 and source.num_frames(1) == 1
  np.testing.assert_array_equal(source.frame(1, 0), np.full((7, 9, 3), 20, np.uint8))
  assert source.labels(0, 0).keypoints.tolist() == [[10.5, 20.25], [3, 4]]
  assert source.labels(1, 0).visible.tolist() == [False, True]
  assert source.joint_names == ['nose', 'tail']
  assert [Path(p).name for p in source.unlabeled_images] == ['img003.png']


def test_labeled_frames_missing_image(tmp_path, caplog):
  csv = make_project(tmp_path)
  (tmp_path / 'labeled-data' / 'vid' / 'img002.png').unlink()
  with pytest.raises(DataError, match=r"CollectedData_me\.csv: 1 of 2 labelled images not "
                                      r"found.*img002\.png.*image_root"):
    dlc.LabeledFramesSource(csv)
  with caplog.at_level(logging.WARNING):
    source = dlc.LabeledFramesSource(csv, on_bad='warn')
  assert source.num_videos == 1
  assert 'img002.png not found' in caplog.text and 'skipped 1 of 2' in caplog.text


def test_real_mirror_mouse_labels():
  root = shared_dir() / 'data' / 'mirror-mouse'
  if not (root / 'CollectedData.csv').is_file():
    pytest.skip(f'shared data not found at {root} (set PPL_SHARED_DIR)')
  labels = dlc.read_dlc_csv(root / 'CollectedData.csv')
  assert len(labels.bodyparts) == 17 and labels.bodyparts[0] == 'paw1LH_top'
  assert labels.bodyparts[-3:] == ['nose_bot', 'obsHigh_bot', 'obsLow_bot']
  assert labels.bodyparts[7] == 'obs_top'
  assert len(labels.image_paths) == 90
  # First data row of the file, by hand: img01 paw1LH_top 77.25,36.25;
  # paw2LF_top 253.5,101.900392541708; tailBase_top and tailMid_top empty.
  assert labels.image_paths[0] == 'labeled-data/img01.png'
  np.testing.assert_allclose(labels.keypoints[0, :2], [[77.25, 36.25], [253.5, 101.900392541708]])
  assert labels.visible[0].tolist()[4:7] == [False, False, True]
  source = dlc.LabeledFramesSource(root / 'CollectedData.csv')
  assert source.num_videos == 90
  assert len(source.unlabeled_images) == 3
  assert source.frame(0, 0).shape == (406, 396, 3)
