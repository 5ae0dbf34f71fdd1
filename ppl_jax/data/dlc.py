"""DeepLabCut label files: read/write the CSV layout, and labelled images as a source.

Layout (DeepLabCut `CollectedData_<scorer>.csv`): header rows `scorer`, optionally
`individuals` (multi-animal projects), `bodyparts`, `coords`; then one row per
image: the image path, then x, y (and, in analysis outputs, likelihood) per body
part, in pixels with pixel centres at integers (the matplotlib labelling GUI's
convention). An empty cell is a missing label. DeepLabCut < 2.2 writes the image
path in one index column ('labeled-data/video/img001.png'); newer versions split
it over three ('labeled-data', 'video', 'img001.png'); both are read.

Read with the csv module rather than pandas.read_csv(header=[...], index_col=...):
pandas needs the number of header rows and index columns up front, while these
vary between DeepLabCut versions and are found here from the header itself.
"""

import csv
import dataclasses
import math
import os
from pathlib import Path
from typing import List, Optional, Sequence, Union

import numpy as np
from absl import logging

from ppl_jax.data import base
from ppl_jax.data import video
from ppl_jax.data.errors import DataError, check_on_bad, handle_bad, log_skipped

PathLike = Union[str, os.PathLike]

_HEADER_NAMES = ('scorer', 'individuals', 'bodyparts', 'coords')
_LAYOUT_HINT = ('expected the DeepLabCut CollectedData layout: rows "scorer", '
                '"bodyparts", "coords" (x, y per body part), then one row per image '
                '(image path, then x, y per body part)')


@dataclasses.dataclass(frozen=True)
class DLCLabels:
  """Labels of R images and G body parts.

  image_paths: R paths as written in the file ('/'-separated).
  bodyparts: G names ('individual/bodypart' in multi-animal files).
  keypoints: float32 [R, G, 2] (x, y) pixels; 0 where missing.
  visible: bool [R, G]; False where a coordinate cell is empty.
  likelihood: float32 [R, G] (NaN where empty) or None when the file has none.
  """
  path: str
  scorer: str
  image_paths: List[str]
  bodyparts: List[str]
  keypoints: np.ndarray
  visible: np.ndarray
  likelihood: Optional[np.ndarray]


def read_dlc_csv(path: PathLike) -> DLCLabels:
  """Reads a DeepLabCut labels CSV (see module docstring)."""
  path = str(path)
  try:
    with open(path, newline='', encoding='utf-8-sig') as f:
      rows = list(csv.reader(f))
  except FileNotFoundError as e:
    raise DataError(f'{path}: labels file not found.') from e
  except (OSError, UnicodeDecodeError, csv.Error) as e:
    raise DataError(f'{path}: cannot be read as a CSV file ({e}); {_LAYOUT_HINT}.') from e

  header = {}
  n_header = 0
  while (n_header < len(rows) and rows[n_header]
         and rows[n_header][0].strip().lower() in _HEADER_NAMES):
    header[rows[n_header][0].strip().lower()] = rows[n_header]
    n_header += 1
  if not {'scorer', 'bodyparts', 'coords'} <= header.keys():
    raise DataError(f'{path}: header rows {sorted(header)} found, "scorer", '
                    f'"bodyparts" and "coords" needed; {_LAYOUT_HINT}.')
  coords = [c.strip().lower() for c in header['coords']]
  width = len(coords)
  for name, row in header.items():
    if len(row) != width:
      raise DataError(f'{path}: header row "{name}" has {len(row)} cells, the '
                      f'"coords" row {width}; every row needs the same columns.')
  if 'x' not in coords:
    raise DataError(f'{path}: the "coords" row has no "x" column; {_LAYOUT_HINT}.')
  n_index = coords.index('x')

  # Group value columns by (individual, bodypart); each group has x, y[, likelihood].
  groups = {}
  for col in range(n_index, width):
    key = (header['individuals'][col].strip() if 'individuals' in header else '',
           header['bodyparts'][col].strip())
    if coords[col] not in ('x', 'y', 'likelihood'):
      raise DataError(f'{path}: column {col + 1} of the "coords" row is '
                      f'{coords[col]!r}; only x, y, likelihood are known.')
    groups.setdefault(key, {})
    if coords[col] in groups[key]:
      raise DataError(f'{path}: body part {key[1]!r} has two {coords[col]!r} columns.')
    groups[key][coords[col]] = col
  for (individual, part), cols in groups.items():
    if 'x' not in cols or 'y' not in cols:
      raise DataError(f'{path}: body part {part!r} lacks an x or y column; '
                      f'{_LAYOUT_HINT}.')
  bodyparts = [f'{ind}/{part}' if ind else part for ind, part in groups]
  has_likelihood = all('likelihood' in cols for cols in groups.values())

  image_paths, keypoints, likelihood = [], [], []
  for line, row in enumerate(rows[n_header:], start=n_header + 1):
    if not any(cell.strip() for cell in row):
      continue  # blank line
    if len(row) != width:
      raise DataError(
          f'{path}, line {line}: {len(row)} cells, expected {width} ({n_index} image '
          f'path column(s) + {width - n_index} coordinate columns for '
          f'{len(groups)} body parts); fix or remove that row.')
    image_paths.append('/'.join(c.strip().replace('\\', '/') for c in row[:n_index]
                                if c.strip()))

    def number(col, line=line, row=row):
      cell = row[col].strip()
      if not cell:
        return math.nan
      try:
        return float(cell)
      except ValueError:
        raise DataError(f'{path}, line {line}, column {col + 1} ({header["bodyparts"][col]} '
                        f'{coords[col]}): {cell!r} is not a number; use an empty cell '
                        'for a missing label.') from None

    keypoints.append([[number(c['x']), number(c['y'])] for c in groups.values()])
    if has_likelihood:
      likelihood.append([number(c['likelihood']) for c in groups.values()])
  if not image_paths:
    raise DataError(f'{path}: no label rows after the header; {_LAYOUT_HINT}.')

  keypoints = np.asarray(keypoints, np.float64).reshape(len(image_paths), len(groups), 2)
  visible = ~np.isnan(keypoints).any(axis=-1)
  keypoints = np.where(visible[..., None], keypoints, 0.0).astype(np.float32)
  scorers = sorted({c.strip() for c in header['scorer'][n_index:] if c.strip()})
  return DLCLabels(
      path=path, scorer=','.join(scorers), image_paths=image_paths,
      bodyparts=bodyparts, keypoints=keypoints, visible=visible,
      likelihood=np.asarray(likelihood, np.float32) if has_likelihood else None)


def _format(value: float) -> str:
  return '' if not math.isfinite(value) else repr(float(value))


def write_dlc_csv(path: PathLike, index: Sequence[Union[str, int]],
                  keypoints: np.ndarray, bodyparts: Sequence[str], *,
                  visible: Optional[np.ndarray] = None,
                  likelihood: Optional[np.ndarray] = None,
                  scorer: str = 'ppl_jax') -> None:
  """Writes keypoints in the DeepLabCut CSV layout.

  index: R image paths or frame numbers (the first column).
  keypoints: [R, G, 2] (x, y) pixels. visible: bool [R, G] (False -> empty cells).
  likelihood: [R, G] or None; with it the columns are x, y, likelihood (the
  DeepLabCut analysis-output layout), without it x, y (the CollectedData layout).
  """
  keypoints = np.asarray(keypoints, np.float64)
  num_rows, num_parts = len(index), len(bodyparts)
  if keypoints.shape != (num_rows, num_parts, 2):
    raise ValueError(f'{path}: keypoints must be [{num_rows}, {num_parts}, 2] '
                     f'(rows, body parts, xy), got {keypoints.shape}.')
  if visible is not None:
    keypoints = np.where(np.asarray(visible, bool)[..., None], keypoints, np.nan)
  coords = ['x', 'y'] + (['likelihood'] if likelihood is not None else [])
  if likelihood is not None:
    likelihood = np.asarray(likelihood, np.float64).reshape(num_rows, num_parts)
  with open(path, 'w', newline='') as f:
    writer = csv.writer(f)
    writer.writerow(['scorer'] + [scorer] * (num_parts * len(coords)))
    writer.writerow(['bodyparts'] + [p for p in bodyparts for _ in coords])
    writer.writerow(['coords'] + coords * num_parts)
    for r in range(num_rows):
      cells = [str(index[r])]
      for g in range(num_parts):
        cells += [_format(keypoints[r, g, 0]), _format(keypoints[r, g, 1])]
        if likelihood is not None:
          cells.append(_format(likelihood[r, g]))
      writer.writerow(cells)


class LabeledFramesSource(base.VideoSource):
  """Each labelled image of a DeepLabCut labels CSV as a one-frame video (evaluation only).

  image_root: folder the CSV's image paths are relative to (the DeepLabCut
  project folder); by default the first of the CSV's folder and its two parents
  under which the most listed images exist.
  """

  def __init__(self, labels_csv: PathLike, image_root: Optional[PathLike] = None,
               on_bad: str = 'error'):
    check_on_bad(on_bad)
    self._labels = read_dlc_csv(labels_csv)
    csv_dir = Path(labels_csv).resolve().parent
    if image_root is None:
      candidates = [csv_dir, csv_dir.parent, csv_dir.parent.parent]
      counts = [sum((c / p).is_file() for p in self._labels.image_paths)
                for c in candidates]
      root = candidates[int(np.argmax(counts))]
    else:
      root = Path(image_root)
    self.image_root = str(root)
    missing = [p for p in self._labels.image_paths if not (root / p).is_file()]
    if missing and (on_bad == 'error' or len(missing) == len(self._labels.image_paths)):
      tried = ' or '.join(str(c) for c in ([root] if image_root is not None else candidates))
      raise DataError(
          f'{labels_csv}: {len(missing)} of {len(self._labels.image_paths)} labelled '
          f'images not found under {tried}, e.g. {missing[:3]}; put the images '
          'there, pass image_root= the DeepLabCut project folder, or remove their rows.')
    skipped = []
    for p in missing:
      handle_bad(on_bad, DataError(f'{labels_csv}: labelled image {root / p} not found.'),
                 skipped)
    log_skipped(skipped, len(self._labels.image_paths), 'labelled images', str(labels_csv))
    missing_set = set(missing)
    self._rows = [i for i, p in enumerate(self._labels.image_paths) if p not in missing_set]
    self._paths = [str(root / self._labels.image_paths[i]) for i in self._rows]
    listed = {os.path.normpath(p) for p in self._paths}
    folders = {os.path.dirname(p) for p in self._paths}
    self.unlabeled_images = sorted(
        str(f) for d in folders for f in video.list_images(d)
        if os.path.normpath(str(f)) not in listed)
    if self.unlabeled_images:
      logging.info('%s: %d images next to the labelled ones have no labels row and '
                   'are not used.', labels_csv, len(self.unlabeled_images))

  @property
  def labels_file(self) -> DLCLabels:
    return self._labels

  @property
  def num_videos(self) -> int:
    return len(self._rows)

  def num_frames(self, video_index: int) -> int:
    del video_index
    return 1

  def frame(self, video_index: int, index: int) -> np.ndarray:
    if index != 0:
      raise IndexError(f'{self._paths[video_index]}: a labelled image has one frame, '
                       f'got index {index}.')
    return video.read_image(self._paths[video_index])

  def labels(self, video_index: int, index: int) -> base.FrameLabels:
    del index
    row = self._rows[video_index]
    return base.FrameLabels(keypoints=self._labels.keypoints[row].copy(),
                            visible=self._labels.visible[row].copy())

  def video_name(self, video_index: int) -> str:
    return self._paths[video_index]

  @property
  def joint_names(self) -> List[str]:
    return list(self._labels.bodyparts)
