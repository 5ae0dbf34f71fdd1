"""A user's own videos: a folder of video files and/or per-video frame folders.

Layout: `root/<name>.{mp4,avi,mov,mkv}` (one video each) and/or
`root/<name>/<frame>.{png,jpg,jpeg}` (one video per folder, frames in natural
name order); only the top level of `root` is searched. `root` may also be a
single video file. No labels are needed.

Optional labels: a DeepLabCut CollectedData CSV whose image paths follow the
DeepLabCut frame-extraction convention `labeled-data/<video name>/img<frame>.png`
(<video name> = the video file's stem or the frame folder's name; <frame> = the
0-based frame number, or for frame folders the image file name). Rows that name
no frame of these videos are skipped with a logged count; labelled images that
are not frames of the videos (e.g. the mirror-mouse example) are evaluated with
`ppl_jax.data.dlc.LabeledFramesSource` instead.
"""

import collections
import os
import re
import threading
from pathlib import Path
from typing import Dict, List, Optional, Tuple, Union

import numpy as np
from absl import logging

from ppl_jax.data import base
from ppl_jax.data import dlc
from ppl_jax.data import video
from ppl_jax.data.errors import DataError, check_on_bad, handle_bad, log_skipped

PathLike = Union[str, os.PathLike]


def _discover(root: Path, on_bad: str, cache_size: int):
  """The videos under `root` as VideoReader / ImageSequence objects."""
  if not root.exists():
    raise DataError(f'{root}: folder not found; give a folder of video files '
                    f'({", ".join(video.VIDEO_EXTENSIONS)}) or of per-video frame folders.')
  if root.is_file():
    if root.suffix.lower() not in video.VIDEO_EXTENSIONS:
      raise DataError(f'{root}: not a supported video file; use one of '
                      f'{", ".join(video.VIDEO_EXTENSIONS)} or a folder of them.')
    return [video.VideoReader(root, cache_size=cache_size)]
  entries = sorted(root.iterdir(), key=lambda p: video.natural_key(p.name))
  if not entries:
    raise DataError(f'{root}: the folder is empty; put video files '
                    f'({", ".join(video.VIDEO_EXTENSIONS)}) or per-video folders of '
                    'png/jpg frames in it.')
  candidates = []
  for entry in entries:
    if entry.is_file() and entry.suffix.lower() in video.VIDEO_EXTENSIONS:
      candidates.append(entry)
    elif entry.is_dir() and video.list_images(entry):
      candidates.append(entry)
  if not candidates:
    found = collections.Counter(e.suffix.lower() or ('<folder>' if e.is_dir() else '<none>')
                                for e in entries)
    raise DataError(
        f'{root}: no videos of a supported type (found {dict(found)}); put video files '
        f'({", ".join(video.VIDEO_EXTENSIONS)}) or folders of png/jpg frames (one '
        'folder per video) directly in it, or convert the videos, e.g. '
        '`ffmpeg -i in.wmv -c:v libx264 -crf 17 out.mp4`.')
  clips, skipped = [], []
  for entry in candidates:
    try:
      if entry.is_file():
        clips.append(video.VideoReader(entry, cache_size=cache_size))
      else:
        clips.append(video.ImageSequence(_readable_frames(entry, on_bad), name=str(entry)))
    except DataError as e:
      handle_bad(on_bad, e, skipped)
  log_skipped(skipped, len(candidates), 'videos', str(root))
  if not clips:
    raise DataError(f'{root}: none of the {len(candidates)} videos could be read; '
                    'see the warnings above.')
  return clips


def _readable_frames(folder: Path, on_bad: str) -> List[Path]:
  """The frames of a frame folder, each checked whole (`video.check_image`): a bad one
  raises (on_bad='error') or is skipped with a warning ('warn')."""
  frames, skipped = [], []
  for path in video.list_images(folder):
    try:
      video.check_image(path)
      frames.append(path)
    except DataError as e:
      handle_bad(on_bad, e, skipped)
  log_skipped(skipped, len(skipped) + len(frames), 'frames', str(folder))
  if not frames:
    raise DataError(f'{folder}: none of its {len(skipped)} frames could be read.')
  return frames


def _clip_key(clip) -> str:
  """The name DeepLabCut uses for a video's labeled-data folder."""
  path = Path(clip.name)
  return path.stem if isinstance(clip, video.VideoReader) else path.name


class CustomVideosSource(base.VideoSource):
  """Videos from a folder (see module docstring); frames uint8 [H, W, 3] at their own size.

  on_bad: 'error' raises on an unreadable video; 'warn' skips it with a warning.
  max_open: at most this many video files are kept open at once.
  """

  def __init__(self, root: PathLike, labels: Optional[PathLike] = None,
               on_bad: str = 'error', *, cache_size: int = 16, max_open: int = 8):
    check_on_bad(on_bad)
    self.root = str(root)
    self._clips = _discover(Path(root), on_bad, cache_size)
    self._max_open = max_open
    self._labels: Optional[dlc.DLCLabels] = None
    self._label_rows: Dict[Tuple[int, int], int] = {}
    if labels:
      self._attach_labels(str(labels))
    self._reset()

  def _reset(self):
    self._lock = threading.Lock()
    self._open = collections.OrderedDict()   # video index -> None, in LRU order

  def __getstate__(self):
    state = self.__dict__.copy()
    del state['_lock'], state['_open']
    return state

  def __setstate__(self, state):
    self.__dict__.update(state)
    self._reset()

  def _attach_labels(self, labels_path: str):
    self._labels = dlc.read_dlc_csv(labels_path)
    by_key = {}
    for v, clip in enumerate(self._clips):
      by_key.setdefault(_clip_key(clip), v)
    unmatched = []
    frame_names = {}   # video -> {frame file name: index}
    for row, image_path in enumerate(self._labels.image_paths):
      parts = image_path.split('/')
      v = by_key.get(parts[-2]) if len(parts) >= 2 else None
      index = None
      if v is not None:
        clip = self._clips[v]
        if isinstance(clip, video.VideoReader):
          digits = re.findall(r'\d+', Path(parts[-1]).stem)
          index = int(digits[-1]) if digits else None
        else:
          if v not in frame_names:   # first match wins, as list.index would
            frame_names[v] = {}
            for i, p in enumerate(clip.paths):
              frame_names[v].setdefault(Path(p).name, i)
          index = frame_names[v].get(parts[-1])
        if index is not None and not 0 <= index < clip.num_frames:
          index = None
      if index is None:
        unmatched.append(image_path)
      else:
        self._label_rows[(v, index)] = row
    if not self._label_rows:
      raise DataError(
          f'{labels_path}: none of its {len(unmatched)} labelled images is a frame of '
          f'the videos in {self.root} (expected paths labeled-data/<video name>/'
          f'img<frame>.png, e.g. {unmatched[:2]}); for labelled images that are not '
          'frames of these videos use ppl_jax.data.dlc.LabeledFramesSource(labels_csv).')
    if unmatched:
      logging.warning('%s: %d of %d labelled images are not frames of the videos in %s '
                      'and are not used, e.g. %s.', labels_path, len(unmatched),
                      len(self._labels.image_paths), self.root, unmatched[:3])

  @property
  def num_videos(self) -> int:
    return len(self._clips)

  def num_frames(self, video_index: int) -> int:
    return self._clips[video_index].num_frames

  def frame(self, video_index: int, index: int) -> np.ndarray:
    clip = self._clips[video_index]
    if isinstance(clip, video.VideoReader):
      with self._lock:
        self._open[video_index] = None
        self._open.move_to_end(video_index)
        evict = []
        while len(self._open) > self._max_open:
          evict.append(self._open.popitem(last=False)[0])
      for v in evict:
        self._clips[v].close()
    return clip.frame(index)

  def labels(self, video_index: int, index: int) -> Optional[base.FrameLabels]:
    row = self._label_rows.get((video_index, index))
    if row is None:
      return None
    return base.FrameLabels(keypoints=self._labels.keypoints[row].copy(),
                            visible=self._labels.visible[row].copy())

  @property
  def labeled_frames(self) -> List[Tuple[int, int]]:
    """(video, frame) pairs that have labels, sorted."""
    return sorted(self._label_rows)

  def frame_size(self, video_index: int) -> Tuple[int, int]:
    """(width, height) in pixels of the video's frames, from its index or first header."""
    clip = self._clips[video_index]
    if isinstance(clip, video.VideoReader):
      return clip.info.width, clip.info.height
    return video.image_size(clip.paths[0])

  def video_name(self, video_index: int) -> str:
    return self._clips[video_index].name

  @property
  def joint_names(self) -> Optional[List[str]]:
    return list(self._labels.bodyparts) if self._labels is not None else None
