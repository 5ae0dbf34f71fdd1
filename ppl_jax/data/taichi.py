"""Taichi (motion-cosegmentation / AutoLink layout).

Layout under `root`:
  {train,test}/<video>/<frame>.png             training videos as frame folders
                                               (video files there work too)
  landmark/taichi_{train,test}_gt.pkl          ground truth ('landmarks/' accepted too)
  eval_images/taichi-256/{train,test}/<file_name>   the labelled evaluation images
The ground truth is a pandas DataFrame with columns `file_name` (the image's
name inside eval_images/taichi-256/<split>/, a flat folder: AutoLink's
datasets/taichi.py and motion-cosegmentation's evaluate.py both open
os.path.join(root, 'eval_images', 'taichi-256', split, file_name)) and `value`
(18 x 2 (x, y) pixels at 256 x 256, -1 = missing; AutoLink swaps the two columns
into its own (row, col) order, so the file holds (x, y)). Paper: 5,000 train /
300 test labelled images.

`TaichiSource(root, split)` gives the videos (unlabelled, for training);
`TaichiSource(root, split, labelled=True)` gives the labelled evaluation images,
each a one-frame video.
"""

import os
from pathlib import Path
from typing import List, Optional, Union

import numpy as np
import pandas as pd

from ppl_jax.data import base
from ppl_jax.data import custom
from ppl_jax.data import video
from ppl_jax.data.errors import DataError, check_on_bad, handle_bad, log_skipped

PathLike = Union[str, os.PathLike]

TAICHI_NUM_JOINTS = 18
TAICHI_LABEL_SIZE = 256   # the ground truth is in pixels of 256 x 256 images

_LAYOUT_HINT = ('expected the Taichi layout of motion-cosegmentation / AutoLink: '
                '{train,test}/<video>/<frame>.png, landmark/taichi_{train,test}_gt.pkl, '
                'eval_images/taichi-256/{train,test}/<image>')


class TaichiSource(base.VideoSource):
  """Taichi videos (labelled=False) or labelled evaluation images (labelled=True).

  Labels: 18 joints, (x, y) pixels of the image as returned (scaled from 256 when
  the image has another size, pixel centres kept at integers); a joint with a -1
  coordinate is not visible.
  """

  def __init__(self, root: PathLike, split: str, *, labelled: bool = False,
               on_bad: str = 'error'):
    check_on_bad(on_bad)
    if split not in ('train', 'test'):
      raise ValueError(f"split must be 'train' or 'test', got {split!r}.")
    root = Path(root)
    self.root, self.split, self.labelled = str(root), split, labelled
    if not root.is_dir():
      raise DataError(f'{root}: Taichi root folder not found; {_LAYOUT_HINT}.')
    self._videos: Optional[custom.CustomVideosSource] = None
    self._images: List[str] = []
    self._sizes = {}   # video index -> (width, height), read once from the image header
    self._points: List[np.ndarray] = []
    if not labelled:
      if not (root / split).is_dir():
        raise DataError(f'{root / split}: folder not found; {_LAYOUT_HINT}.')
      self._videos = custom.CustomVideosSource(root / split, on_bad=on_bad)
    else:
      self._load_labels(root, split, on_bad)

  def _load_labels(self, root: Path, split: str, on_bad: str):
    candidates = [root / d / f'taichi_{split}_gt.pkl' for d in ('landmark', 'landmarks')]
    pkl = next((p for p in candidates if p.is_file()), None)
    if pkl is None:
      raise DataError(f'{candidates[0]}: ground-truth file not found (nor '
                      f'{candidates[1]}); {_LAYOUT_HINT}.')
    try:
      table = pd.read_pickle(pkl)
    except Exception as e:  # pickle raises many types (UnpicklingError, EOFError, ...)
      raise DataError(f'{pkl}: cannot be read with pandas.read_pickle ({e}).') from e
    if not isinstance(table, pd.DataFrame) or not {'file_name', 'value'} <= set(table.columns):
      columns = list(table.columns) if isinstance(table, pd.DataFrame) else type(table).__name__
      raise DataError(f'{pkl}: expected a pandas DataFrame with columns file_name, '
                      f'value; got {columns}.')
    image_dir = root / 'eval_images' / 'taichi-256' / split
    if not image_dir.is_dir():
      raise DataError(f'{image_dir}: evaluation image folder not found; {_LAYOUT_HINT}.')
    present = set(os.listdir(image_dir))
    skipped = []
    for row, (name, value) in enumerate(zip(table['file_name'], table['value'])):
      points = np.asarray(value, np.float64)
      if points.shape != (TAICHI_NUM_JOINTS, 2):
        raise DataError(f'{pkl}: row {row} ({name}) has a value of shape {points.shape}, '
                        f'expected ({TAICHI_NUM_JOINTS}, 2) (x, y) pixels at 256.')
      if str(name) not in present and not (image_dir / str(name)).is_file():
        handle_bad(on_bad, DataError(
            f'{image_dir / str(name)}: image of row {row} of {pkl} not found; restore '
            'it or remove the row.'), skipped)
        continue
      self._images.append(str(image_dir / str(name)))
      self._points.append(points)
    log_skipped(skipped, len(table), 'labelled images', str(pkl))
    if not self._images:
      raise DataError(f'{pkl}: no labelled image found in {image_dir}.')

  @property
  def num_videos(self) -> int:
    return self._videos.num_videos if self._videos is not None else len(self._images)

  def num_frames(self, video_index: int) -> int:
    return self._videos.num_frames(video_index) if self._videos is not None else 1

  def frame(self, video_index: int, index: int) -> np.ndarray:
    if self._videos is not None:
      return self._videos.frame(video_index, index)
    if index != 0:
      raise IndexError(f'{self._images[video_index]}: an evaluation image has one '
                       f'frame, got index {index}.')
    return video.read_image(self.frame_path(video_index, index))

  def frame_path(self, video_index: int, index: int) -> Optional[str]:
    """The image file of an evaluation frame (copied as is by the prepare builders);
    None for training videos, whose frames the builders re-encode."""
    del index
    return None if self._videos is not None else self._images[video_index]

  def labels(self, video_index: int, index: int) -> Optional[base.FrameLabels]:
    if self._videos is not None:
      return None
    points = self._points[video_index]
    visible = (points != -1).all(axis=-1)
    if video_index not in self._sizes:
      self._sizes[video_index] = video.image_size(self._images[video_index])
    width, height = self._sizes[video_index]
    xy = base.normalized_to_pixels(
        base.pixels_to_normalized(points, TAICHI_LABEL_SIZE, TAICHI_LABEL_SIZE), width, height)
    return base.FrameLabels(keypoints=np.where(visible[:, None], xy, 0).astype(np.float32),
                            visible=visible)

  def video_name(self, video_index: int) -> str:
    if self._videos is not None:
      return self._videos.video_name(video_index)
    return self._images[video_index]
