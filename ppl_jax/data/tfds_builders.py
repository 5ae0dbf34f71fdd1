"""TFDS builders writing Human3.6M / Taichi to ArrayRecord, and `PreparedSource` reading them.

Both builders serialise a raw-layout `VideoSource` (SPEC section 5; the manual download
dir is the dataset root) frame by frame, in (video, frame) order, with
`file_format='array_record'`. They work without TensorFlow: tfds 4.9.10's
`download_and_prepare` writes ArrayRecord and `as_data_source` reads it back without TF
as long as no feature needs TF to encode. `tfds.features.Image` does (it encodes through
`tf.image`), so images are stored as the encoded file bytes in an object `Tensor` and
decoded with Pillow on read. Per-split video names and frame counts go to the dataset's
`metadata.json`, so `PreparedSource` maps (video, frame) to a record index without a scan.

Prepare with `python -m ppl_jax.data.prepare --dataset=h36m --manual_dir=RAW --data_dir=OUT`
and train with `config.data.data_dir=OUT` (read through `input_pipeline.build_source`).
"""

import io
import threading
from typing import Dict, Optional, Sequence, Tuple

from etils import epath
import numpy as np
from PIL import Image
import tensorflow_datasets as tfds

from ppl_jax.data import base
from ppl_jax.data import raw
from ppl_jax.data import video as video_lib


def _encode_frame(source: base.VideoSource, video: int, index: int) -> bytes:
  """The frame's encoded bytes: its file as is where the source names one, else PNG."""
  # `frame_path` is an optional hook of the raw readers (not part of VideoSource) that
  # names a frame's file, or None: copying the original JPEG/PNG bytes avoids a lossy or
  # bloating re-encode.
  frame_path = getattr(source, 'frame_path', None)
  path = frame_path(video, index) if frame_path is not None else None
  if path is not None:
    with open(path, 'rb') as f:
      return f.read()
  buffer = io.BytesIO()
  Image.fromarray(source.frame(video, index)).save(buffer, format='PNG', compress_level=1)
  return buffer.getvalue()


class VideoSourceBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """Writes every frame (and its labels) of a `VideoSource` per split, in order.

  Subclasses set `SOURCE_NAME` (the `config.data.name` they serve) and `SPLITS`; the
  sources come from `make_source(manual_dir, split)` (default: the raw reader
  `ppl_jax.data.raw.raw_source`, so prepared and raw data give the same frames).
  """

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'Frames as encoded bytes, labels in pixels, ArrayRecord.'}
  SOURCE_NAME = ''
  SPLITS = ('train', 'test')
  MANUAL_DOWNLOAD_INSTRUCTIONS = 'Point --manual_dir at the raw dataset root.'
  # tfds 4.9.10 derives `code_path` (used only to look for a checksums file) through
  # `importlib_resources`, which it declares for Python < 3.9 only and so fails on
  # builders inside a package (tensorflow/datasets#11212): give it the file directly.
  code_path = epath.Path(__file__)

  def make_source(self, manual_dir: str, split: str) -> base.VideoSource:
    return raw.raw_source(self.SOURCE_NAME, manual_dir, split)

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self,
        description=self.__class__.__doc__,
        features=tfds.features.FeaturesDict({
            'image': tfds.features.Tensor(shape=(), dtype=np.object_),  # JPEG/PNG bytes
            'video': np.int32,
            'frame': np.int32,
            'has_labels': np.bool_,
            'keypoints': tfds.features.Tensor(shape=(None, 2), dtype=np.float32,
                                              encoding='bytes'),  # pixels
            'visible': tfds.features.Tensor(shape=(None,), dtype=np.bool_,
                                            encoding='bytes'),
        }),
        disable_shuffling=True,  # records stay in (video, frame) order
        metadata=tfds.core.MetadataDict(),
    )

  def _split_generators(self, dl_manager):
    manual_dir = str(dl_manager.manual_dir)
    generators = {}
    self.info.metadata['joint_names'] = self.info.metadata['skeleton'] = None
    for split in self.SPLITS:
      source = self.make_source(manual_dir, split)
      self.info.metadata[split] = {
          'video_names': [source.video_name(v) for v in range(source.num_videos)],
          'num_frames': [int(source.num_frames(v)) for v in range(source.num_videos)],
      }
      if source.joint_names is not None:
        self.info.metadata['joint_names'] = list(source.joint_names)
      if source.skeleton is not None:
        self.info.metadata['skeleton'] = [[int(i), int(j)] for i, j in source.skeleton]
      generators[split] = self._generate_examples(source)
    return generators

  def _generate_examples(self, source: base.VideoSource):
    key = 0
    for video in range(source.num_videos):
      for index in range(source.num_frames(video)):
        labels = source.labels(video, index)
        if labels is None:
          keypoints, visible = np.zeros((0, 2), np.float32), np.zeros((0,), bool)
        else:
          keypoints = np.asarray(labels.keypoints, np.float32)
          visible = np.asarray(labels.visible, bool)
        yield key, {'image': _encode_frame(source, video, index), 'video': video,
                    'frame': index, 'has_labels': labels is not None,
                    'keypoints': keypoints, 'visible': visible}
        key += 1  # keys sort in generation order (disable_shuffling keeps key order)


class PplH36m(VideoSourceBuilder):
  """Simplified Human3.6M (Zhang et al. 2018): train S1,5,6,7,8,9, test S11."""

  SOURCE_NAME = 'h36m'
  MANUAL_DOWNLOAD_INSTRUCTIONS = """
  Point --manual_dir at the extracted simplified Human3.6M root holding
  S{n}/WithBackground/<sequence>/<frame>.jpg and S{n}/Landmarks/<sequence>/<frame>.mat.
  """


class PplTaichi(VideoSourceBuilder):
  """Taichi (motion-cosegmentation / AutoLink layout): training videos ('train') and
  the labelled evaluation images of both splits ('test', 'train_eval')."""

  SOURCE_NAME = 'taichi'
  SPLITS = ('train', 'test', 'train_eval')
  MANUAL_DOWNLOAD_INSTRUCTIONS = """
  Point --manual_dir at the Taichi root holding train/<video>/<frame>.png,
  landmark/taichi_{train,test}_gt.pkl and eval_images/taichi-256/{train,test}.
  """


BUILDERS = {builder.SOURCE_NAME: builder for builder in (PplH36m, PplTaichi)}


class PreparedSource(base.VideoSource):
  """A `VideoSource` over the ArrayRecord files a `VideoSourceBuilder` wrote.

  Reads `data_dir/<builder name>/<newest version>` with `tfds.builder_from_directory`
  (no builder class needed). Picklable: the data source opens lazily in each process.
  """

  def __init__(self, data_dir: str, name: str, split: str,
               builder_name: Optional[str] = None):
    if builder_name is None:
      if name not in BUILDERS:
        raise ValueError(f'config.data.data_dir is set but config.data.name={name!r} has '
                         f'no prepared-data builder; use one of {sorted(BUILDERS)} or '
                         'clear config.data.data_dir.')
      builder_name = BUILDERS[name].name
    folder = epath.Path(data_dir) / builder_name
    versions = sorted((p for p in folder.glob('*') if (p / 'dataset_info.json').exists()),
                      key=lambda p: tfds.core.Version(p.name))
    if not versions:
      raise FileNotFoundError(
          f'No prepared {builder_name!r} data under config.data.data_dir={data_dir!r} '
          f'(looked for {folder}/<version>/dataset_info.json); run `python -m '
          f'ppl_jax.data.prepare --dataset={name} --manual_dir=RAW --data_dir={data_dir}` '
          'first.')
    self._path = str(versions[-1])
    metadata = tfds.builder_from_directory(self._path).info.metadata or {}
    if split == 'train_eval' and split not in metadata:
      split = 'train'  # every training frame is labelled (h36m)
    self._split = split
    if split not in metadata:
      raise ValueError(f'config.data.data_dir={data_dir!r} holds no split {split!r} in '
                       f'{self._path}; prepare it with `python -m ppl_jax.data.prepare '
                       f'--dataset={name} --manual_dir=RAW --data_dir={data_dir}`.')
    self._names = list(metadata[split]['video_names'])
    self._counts = [int(n) for n in metadata[split]['num_frames']]
    self._offsets = np.concatenate([[0], np.cumsum(self._counts)]).astype(np.int64)
    self._joint_names = metadata.get('joint_names')
    self._skeleton = metadata.get('skeleton')
    self._records = None
    self._lock = threading.Lock()

  def __getstate__(self):
    state = dict(self.__dict__)
    del state['_records'], state['_lock']
    return state

  def __setstate__(self, state):
    self.__dict__.update(state)
    self._records = None
    self._lock = threading.Lock()

  def _record(self, video: int, index: int) -> Dict[str, np.ndarray]:
    if not 0 <= index < self._counts[video]:
      raise IndexError(f'frame {index} of video {self._names[video]!r} '
                       f'({self._counts[video]} frames)')
    if self._records is None:
      with self._lock:  # reader threads share one data source per process
        if self._records is None:
          self._records = tfds.builder_from_directory(self._path).as_data_source(
              self._split)
    record = self._records[int(self._offsets[video] + index)]
    assert record['video'] == video and record['frame'] == index, 'records out of order'
    return record

  @property
  def num_videos(self) -> int:
    return len(self._counts)

  def num_frames(self, video: int) -> int:
    return self._counts[video]

  def frame(self, video: int, index: int) -> np.ndarray:
    return video_lib.read_image(io.BytesIO(self._record(video, index)['image']))

  def labels(self, video: int, index: int) -> Optional[base.FrameLabels]:
    record = self._record(video, index)
    if not record['has_labels']:
      return None
    return base.FrameLabels(keypoints=np.asarray(record['keypoints'], np.float32),
                            visible=np.asarray(record['visible'], bool))

  def video_name(self, video: int) -> str:
    return self._names[video]

  @property
  def skeleton(self) -> Optional[Sequence[Tuple[int, int]]]:
    return None if self._skeleton is None else [tuple(e) for e in self._skeleton]

  @property
  def joint_names(self) -> Optional[Sequence[str]]:
    return self._joint_names
