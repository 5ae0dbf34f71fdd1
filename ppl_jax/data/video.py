"""Frame access for video files (PyAV) and folders of frame images.

PyAV (`av`) decodes the videos: its PyPI wheels bundle FFmpeg (with libx264 and
ffv1), so `pip install av` is enough on a bare machine (no system FFmpeg, no
OpenCV), and it exposes packet timestamps and keyframe flags, which exact frame
counts and random access by seeking need.

Random access: a `VideoReader` indexes the presentation timestamps (pts) of all
frames once, then serves frame i by seeking to the keyframe at or before it and
decoding forward; it keeps decoding forward without seeking when the next
request is ahead in the same group of pictures, and caches a few decoded
frames, so sequential and nearby reads are cheap. Readers are picklable: the
index (a small array) travels, the open container does not.
"""

import collections
import contextlib
import dataclasses
import fractions
import os
import re
import threading
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Union

import av
import numpy as np
from PIL import Image

from ppl_jax.data.errors import DataError

PathLike = Union[str, os.PathLike]

VIDEO_EXTENSIONS = ('.mp4', '.avi', '.mov', '.mkv')
IMAGE_EXTENSIONS = ('.png', '.jpg', '.jpeg')

_REENCODE_HINT = ('check it plays (e.g. `ffprobe FILE`), re-encode it (e.g. '
                  '`ffmpeg -i FILE -c:v libx264 -crf 17 OUT.mp4`) or remove it')


def natural_key(name: str):
  """Sort key that orders embedded numbers numerically ('2.png' < '10.png')."""
  return [int(t) if t.isdigit() else t.lower() for t in re.split(r'(\d+)', name)]


def list_images(folder: PathLike) -> List[Path]:
  """The png/jpg files directly inside `folder`, in natural order of their names."""
  folder = Path(folder)
  files = [p for p in folder.iterdir()
           if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS]
  return sorted(files, key=lambda p: natural_key(p.name))


@contextlib.contextmanager
def _open_image(path: PathLike):
  """PIL image of `path`; a missing or unreadable file is a DataError naming it."""
  try:
    with Image.open(path) as image:
      yield image
  except FileNotFoundError as e:
    raise DataError(f'{path}: image file not found; restore it or remove it from '
                    'the dataset / labels file.') from e
  except (OSError, ValueError) as e:
    raise DataError(f'{path}: cannot be read as an image ({e}); re-save it as '
                    'PNG or JPEG, or remove it.') from e


def read_image(path: PathLike) -> np.ndarray:
  """An image file as uint8 [H, W, 3] RGB (greyscale and RGBA are converted)."""
  with _open_image(path) as image:
    return np.asarray(image.convert('RGB'), dtype=np.uint8)


def check_image(path: PathLike):
  """(width, height) of an image file whose whole content is checked without decoding
  its pixels (PIL's `verify`: PNG chunk CRCs, a truncated file); DataError naming it."""
  with _open_image(path) as image:
    size = image.size
    try:
      image.verify()
    except (OSError, ValueError, SyntaxError) as e:   # PIL raises all three for bad files
      raise DataError(f'{path}: a corrupt image ({e}); re-save it as PNG or JPEG, or '
                      'remove it.') from e
  return size


def image_size(path: PathLike):
  """(width, height) of an image file, read from its header only."""
  with _open_image(path) as image:
    return image.size


@dataclasses.dataclass(frozen=True)
class VideoInfo:
  """num_frames: exact number of decodable frames; width, height in pixels; fps (0 if unknown)."""
  num_frames: int
  width: int
  height: int
  fps: float


@dataclasses.dataclass(frozen=True)
class _FrameIndex:
  """pts: int64 [T] presentation timestamps in display order, or None when the
  stream has none (then frames are found by counting from the start);
  keyframes: int64 [K] frame positions of keyframes, sorted, starting with 0."""
  info: VideoInfo
  pts: Optional[np.ndarray]
  keyframes: np.ndarray


def _open_container(path: str):
  try:
    container = av.open(path)
  except FileNotFoundError as e:
    raise DataError(f'{path}: video file not found.') from e
  except (av.error.FFmpegError, OSError, UnicodeDecodeError) as e:
    raise DataError(f'{path}: not a readable video ({e}); '
                    + _REENCODE_HINT.replace('FILE', path)) from e
  if not container.streams.video:
    container.close()
    raise DataError(f'{path}: the file has no video stream; remove it or give a '
                    'video file (mp4/avi/mov/mkv).')
  return container


def _build_index(path: str) -> _FrameIndex:
  """Demuxes (cheap) or, when the container's frame count is missing or does not
  match its packets, decodes the whole video once to count its frames."""
  container = _open_container(path)
  try:
    stream = container.streams.video[0]
    fps = float(stream.average_rate or stream.guessed_rate or 0)
    # Size-0 packets are the demuxer's end-of-stream flush packets, and packets
    # flagged discard (e.g. cut by an mp4 edit list) are not shown: neither is a frame.
    packets, corrupt = [], False
    for packet in container.demux(stream):
      if packet.size > 0 and not packet.is_discard:
        packets.append((packet.pts, packet.is_keyframe))
        corrupt = corrupt or packet.is_corrupt
    packet_pts = [p for p, _ in packets]
    trusted = (len(packets) > 0 and stream.frames == len(packets) and not corrupt
               and None not in packet_pts and len(set(packet_pts)) == len(packet_pts))
    container.seek(0)
    if trusted:
      first = next(iter(container.decode(stream)), None)
      if first is None:
        raise DataError(f'{path}: no frame could be decoded; '
                        + _REENCODE_HINT.replace('FILE', path))
      frame_pts = sorted(packet_pts)
      width, height = first.width, first.height
    else:
      frame_pts, width, height = [], 0, 0
      for frame in container.decode(stream):
        frame_pts.append(frame.pts)
        width, height = frame.width, frame.height
      if not frame_pts:
        raise DataError(f'{path}: the video has no decodable frames; '
                        + _REENCODE_HINT.replace('FILE', path))
  except av.error.FFmpegError as e:
    raise DataError(f'{path}: decoding failed ({e}); '
                    + _REENCODE_HINT.replace('FILE', path)) from e
  finally:
    container.close()
  info = VideoInfo(num_frames=len(frame_pts), width=width, height=height, fps=fps)
  if None in frame_pts or any(b <= a for a, b in zip(frame_pts, frame_pts[1:])):
    # No usable timestamps: frames are found by counting from the start.
    return _FrameIndex(info, None, np.zeros([1], np.int64))
  key_pts = {p for p, is_key in packets if is_key}
  keyframes = sorted({0} | {i for i, p in enumerate(frame_pts) if p in key_pts})
  pts = np.asarray(frame_pts, np.int64)
  keyframes = np.asarray(keyframes, np.int64)
  return _FrameIndex(info, pts, keyframes)


def probe(path: PathLike) -> VideoInfo:
  """Exact frame count, size and frame rate of a video file (raises DataError if unreadable)."""
  return _build_index(str(path)).info


class VideoReader:
  """Random access to the frames of one video file.

  `frame(i)` -> uint8 [H, W, 3] RGB. Thread-safe (one lock per file: grain reads
  elements from several threads). Picklable: the open container, decoder state
  and cache are dropped and reopened lazily.
  """

  def __init__(self, path: PathLike, *, cache_size: int = 16):
    if cache_size < 1:
      raise ValueError(f'cache_size must be >= 1, got {cache_size}.')
    self.path = str(path)
    self.name = self.path
    self._cache_size = cache_size
    self._index = _build_index(self.path)
    self._reset()

  def _reset(self):
    self._lock = threading.Lock()
    self._container = None
    self._frames = None      # decoder generator, positioned after self._position
    self._position = -1      # frame position of the last frame the generator gave
    self._cache = collections.OrderedDict()

  def __getstate__(self):
    state = self.__dict__.copy()
    for key in ('_lock', '_container', '_frames', '_position', '_cache'):
      del state[key]
    return state

  def __setstate__(self, state):
    self.__dict__.update(state)
    self._reset()

  @property
  def info(self) -> VideoInfo:
    return self._index.info

  @property
  def num_frames(self) -> int:
    return self._index.info.num_frames

  def close(self):
    """Releases the open file (it reopens on the next read)."""
    with self._lock:
      self._close_locked()

  def _close_locked(self):
    if self._container is not None:
      self._container.close()
    self._container, self._frames, self._position = None, None, -1
    self._cache.clear()

  def frame(self, index: int) -> np.ndarray:
    """Frame `index` (0-based, display order): uint8 [H, W, 3]."""
    if not 0 <= index < self.num_frames:
      raise IndexError(f'{self.path}: frame {index} out of range [0, {self.num_frames}).')
    with self._lock:
      cached = self._cache.get(index)
      if cached is not None:
        self._cache.move_to_end(index)
        return cached.copy()
      try:
        return self._decode_locked(index).copy()
      except av.error.FFmpegError as e:
        self._close_locked()
        raise DataError(f'{self.path}: decoding frame {index} failed ({e}); '
                        + _REENCODE_HINT.replace('FILE', self.path)) from e

  def _keyframe_at_or_before(self, index: int) -> int:
    keyframes = self._index.keyframes
    return int(keyframes[np.searchsorted(keyframes, index, side='right') - 1])

  def _seek_locked(self, key: int):
    if self._container is None:
      self._container = _open_container(self.path)
    stream = self._container.streams.video[0]
    if self._index.pts is None:
      self._container.seek(0)
      key = 0
    else:
      self._container.seek(int(self._index.pts[key]), stream=stream,
                           backward=True, any_frame=False)
    self._frames = self._container.decode(stream)
    self._position = key - 1

  def _position_of(self, frame) -> Optional[int]:
    if self._index.pts is None:
      return self._position + 1
    pos = int(np.searchsorted(self._index.pts, frame.pts)) if frame.pts is not None else -1
    if 0 <= pos < self.num_frames and self._index.pts[pos] == frame.pts:
      return pos
    return None

  def _decode_locked(self, index: int) -> np.ndarray:
    key = self._keyframe_at_or_before(index)
    # Decoding on from the current position is never slower than seeking when
    # the position is already at or after the keyframe that precedes `index`.
    if self._frames is None or index <= self._position or self._position + 1 < key:
      self._seek_locked(key)
    while True:
      frame = next(self._frames, None)
      if frame is None:
        self._frames = None
        raise DataError(f'{self.path}: the stream ended before frame {index} of '
                        f'{self.num_frames} (the file may be truncated); '
                        + _REENCODE_HINT.replace('FILE', self.path))
      pos = self._position_of(frame)
      if pos is None:
        continue
      self._position = pos
      if pos > index:
        # The seek landed after the wanted frame: retry from an earlier keyframe.
        if key == 0:
          raise DataError(f'{self.path}: frame {index} cannot be reached by seeking; '
                          + _REENCODE_HINT.replace('FILE', self.path))
        key = self._keyframe_at_or_before(key - 1)
        self._seek_locked(key)
        continue
      if pos > index - self._cache_size:
        array = frame.to_ndarray(format='rgb24')
        self._cache[pos] = array
        self._cache.move_to_end(pos)
        while len(self._cache) > self._cache_size:
          self._cache.popitem(last=False)
        if pos == index:
          return array


class ImageSequence:
  """A folder of frame images seen as one video (frames in natural name order)."""

  def __init__(self, paths: Sequence[PathLike], name: str):
    self.paths = [str(p) for p in paths]
    self.name = name

  @property
  def num_frames(self) -> int:
    return len(self.paths)

  def frame(self, index: int) -> np.ndarray:
    """Frame `index`: uint8 [H, W, 3]."""
    return read_image(self.paths[index])

  def close(self):
    """Nothing to release (kept for symmetry with VideoReader)."""


def write_video(path: PathLike, frames: Union[np.ndarray, Iterable[np.ndarray]],
                fps: float, *, codec: Optional[str] = None, crf: int = 17,
                options: Optional[Dict[str, str]] = None) -> None:
  """Writes uint8 [H, W, 3] RGB frames to a video file.

  codec: default by extension: .mp4/.mov -> libx264 (lossy, `crf` quality,
  yuv420p, or yuv444p when a side is odd); .mkv/.avi -> ffv1 (lossless RGB).
  options: extra FFmpeg encoder options, e.g. {'g': '8'} (keyframe interval).
  """
  path = str(path)
  ext = os.path.splitext(path)[1].lower()
  if codec is None:
    if ext in ('.mp4', '.mov'):
      codec = 'libx264'
    elif ext in ('.mkv', '.avi'):
      codec = 'ffv1'
    else:
      raise ValueError(f'{path}: unsupported video extension {ext!r}; use one of '
                       f'{VIDEO_EXTENSIONS}.')
  rate = fractions.Fraction(fps).limit_denominator(1001)
  container = av.open(path, mode='w')
  stream = None
  try:
    for i, array in enumerate(frames):
      array = np.asarray(array)
      if array.dtype != np.uint8 or array.ndim != 3 or array.shape[-1] != 3:
        raise ValueError(f'{path}: frame {i} must be uint8 [H, W, 3], got '
                         f'{array.dtype} {array.shape}.')
      if stream is None:
        height, width = array.shape[:2]
        codec_options = {'crf': str(crf)} if codec == 'libx264' else {}
        codec_options.update(options or {})
        stream = container.add_stream(codec, rate=rate, options=codec_options)
        stream.width, stream.height = width, height
        if codec == 'ffv1':
          stream.pix_fmt = 'bgr0'   # lossless RGB (rgb24 is not an ffv1 format)
        elif codec == 'libx264':
          stream.pix_fmt = 'yuv420p' if width % 2 == 0 and height % 2 == 0 else 'yuv444p'
      elif array.shape[:2] != (stream.height, stream.width):
        raise ValueError(f'{path}: frame {i} has size {array.shape[:2]}, the first '
                         f'frame {(stream.height, stream.width)}; all frames must match.')
      for packet in stream.encode(av.VideoFrame.from_ndarray(array, format='rgb24')):
        container.mux(packet)
    if stream is None:
      raise ValueError(f'{path}: no frames to write.')
    for packet in stream.encode():
      container.mux(packet)
  finally:
    container.close()
