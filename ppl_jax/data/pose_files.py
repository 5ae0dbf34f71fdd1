"""Pose files the analysis tools open: DeepLabCut CSV / HDF5, SLEAP .slp, NWB (ndx-pose).

Every writer takes keypoints [F, N, 2] in pixels of the original frames (pixel centres at
integers, the DeepLabCut convention), likelihood [F, N] and body-part names, for frames
0..F-1 of one video.

  csv  DeepLabCut CSV (`dlc.write_dlc_csv`)
  h5   DeepLabCut HDF5: pandas, key 'df_with_missing', columns MultiIndex
       (scorer, bodyparts, coords) with coords x, y, likelihood, index the frame numbers
  slp  SLEAP labels (sleap-io): one predicted instance a frame, the learned skeleton
  nwb  NWB with ndx-pose PoseEstimation (sleap-io's writer), the same skeleton

The skeleton of .slp / .nwb: nodes = the body parts; edges = the N - 1 heaviest links of
the learned connectivity W (as many as a tree on N keypoints has; ties by pair order),
`skeleton_edges`. slp and nwb need `pip install 'ppl_jax[formats]'` (sleap-io, pynwb,
ndx-pose).
"""

import importlib.util
from typing import List, Sequence, Tuple

import numpy as np

from ppl_jax.data import dlc
from ppl_jax.evaluation import prior_quality

FORMATS = ('csv', 'h5', 'slp', 'nwb')
DEFAULT_FORMATS = ('csv', 'h5')
EXTENSIONS = {'csv': '.csv', 'h5': '.h5', 'slp': '.slp', 'nwb': '.nwb'}
H5_KEY = 'df_with_missing'
_NEEDS = {'h5': ('tables', 'tables'), 'slp': ('sleap_io', 'ppl_jax[formats]'),
          'nwb': ('ndx_pose', 'ppl_jax[formats]')}


def parse_formats(value: str) -> Tuple[str, ...]:
  """'csv,h5' -> ('csv', 'h5'); ValueError naming an unknown or unavailable format."""
  formats = tuple(dict.fromkeys(f.strip().lower() for f in value.split(',') if f.strip()))
  unknown = [f for f in formats if f not in FORMATS]
  if unknown or not formats:
    raise ValueError(f'--formats={value!r}: {"unknown " + ", ".join(unknown) if unknown else "empty"}'
                     f'; use a comma-separated subset of {",".join(FORMATS)}.')
  for name in formats:
    if name in _NEEDS and importlib.util.find_spec(_NEEDS[name][0]) is None:
      raise ValueError(f'--formats={value!r}: {name} files need the {_NEEDS[name][0]} '
                       f"package: pip install '{_NEEDS[name][1]}'.")
  return formats


def skeleton_edges(connectivity: np.ndarray) -> List[Tuple[int, int]]:
  """The N - 1 heaviest pairs i < j of W [N, N] (the module docstring's rule)."""
  n = len(connectivity)
  return [tuple(map(int, e)) for e in
          prior_quality.connectivity_edges(np.asarray(connectivity), top_k=n - 1)]


def write_dlc_h5(path: str, keypoints: np.ndarray, likelihood: np.ndarray,
                 bodyparts: Sequence[str], scorer: str) -> None:
  """DeepLabCut's HDF5 layout (what `deeplabcut.analyze_videos` writes)."""
  import pandas as pd  # pylint: disable=g-import-not-at-top
  frames, parts = likelihood.shape
  columns = pd.MultiIndex.from_product([[scorer], list(bodyparts), ['x', 'y', 'likelihood']],
                                       names=['scorer', 'bodyparts', 'coords'])
  values = np.concatenate([keypoints, likelihood[..., None]], axis=-1).reshape(frames, 3 * parts)
  pd.DataFrame(values.astype(np.float64), columns=columns, index=np.arange(frames)).to_hdf(
      path, key=H5_KEY, format='table', mode='w')


def sleap_labels(keypoints: np.ndarray, likelihood: np.ndarray, bodyparts: Sequence[str],
                 edges: Sequence[Tuple[int, int]], video_path: str):
  """`sleap_io.Labels`: one predicted instance a frame on the learned skeleton."""
  import sleap_io as sio  # pylint: disable=g-import-not-at-top
  skeleton = sio.Skeleton(nodes=[sio.Node(name) for name in bodyparts], name='ppl_jax')
  for i, j in edges:
    skeleton.add_edge(bodyparts[i], bodyparts[j])
  # The video is referenced, not opened: predict has read it already.
  movie = sio.Video(filename=video_path, open_backend=False)
  frames = [
      sio.LabeledFrame(video=movie, frame_idx=t, instances=[sio.PredictedInstance.from_numpy(
          keypoints[t].astype(np.float64), skeleton=skeleton,
          point_scores=likelihood[t].astype(np.float64), score=float(likelihood[t].mean()))])
      for t in range(len(keypoints))]
  return sio.Labels(labeled_frames=frames, videos=[movie], skeletons=[skeleton])


def write_sleap(path: str, fmt: str, keypoints: np.ndarray, likelihood: np.ndarray,
                bodyparts: Sequence[str], edges: Sequence[Tuple[int, int]],
                video_path: str) -> None:
  """A SLEAP .slp (fmt 'slp') or an NWB PoseEstimation file (fmt 'nwb')."""
  import sleap_io as sio  # pylint: disable=g-import-not-at-top
  labels = sleap_labels(keypoints, likelihood, bodyparts, edges, video_path)
  if fmt == 'slp':
    sio.save_slp(labels, path)
  else:
    sio.save_nwb(labels, path, nwb_format='predictions')


def write(path: str, fmt: str, keypoints: np.ndarray, likelihood: np.ndarray,
          bodyparts: Sequence[str], *, scorer: str, connectivity: np.ndarray,
          video_path: str) -> None:
  """Writes one pose file of format `fmt` (one of FORMATS)."""
  if fmt == 'csv':
    dlc.write_dlc_csv(path, list(range(len(keypoints))), keypoints, list(bodyparts),
                      likelihood=likelihood, scorer=scorer)
  elif fmt == 'h5':
    write_dlc_h5(path, keypoints, likelihood, bodyparts, scorer)
  else:
    write_sleap(path, fmt, keypoints, likelihood, bodyparts, skeleton_edges(connectivity),
                video_path)
