"""The raw-layout readers by dataset name: `raw_source(name, root, split)`.

Used by `input_pipeline.build_source` (training on raw data) and by the TFDS builders of
`ppl_jax.data.prepare` (so prepared and raw data give the same frames); each reader's
dependencies load only when it is used.
"""

from typing import Optional

from ppl_jax.data import base


def raw_source(name: str, root: str, split: str, *, labels: Optional[str] = None,
               on_bad: str = 'error', video_cache_frames: int = 16) -> base.VideoSource:
  """The raw-layout reader of dataset `name` ('h36m' | 'taichi' | 'custom') for `split`.

  Human3.6M labels every frame, so 'train_eval' is 'train'. Taichi's training videos
  are unlabelled: 'test' / 'train_eval' are its labelled evaluation images. Custom
  videos have no split: every split is the whole folder (labels from `labels`);
  each video file keeps `video_cache_frames` decoded frames (a short clip can be
  decoded once: random access into long-GOP video is slow).
  """
  # pylint: disable=g-import-not-at-top
  if name == 'h36m':
    from ppl_jax.data import h36m
    return h36m.Human36MSource(root, 'train' if split == 'train_eval' else split,
                               on_bad=on_bad)
  if name == 'taichi':
    from ppl_jax.data import taichi
    if split == 'train':
      return taichi.TaichiSource(root, 'train', on_bad=on_bad)
    return taichi.TaichiSource(root, 'test' if split == 'test' else 'train',
                               labelled=True, on_bad=on_bad)
  if name == 'custom':
    from ppl_jax.data import custom
    return custom.CustomVideosSource(root, labels=labels, on_bad=on_bad,
                                     cache_size=video_cache_frames)
  raise ValueError(f'No raw reader for dataset {name!r}; use h36m, taichi or custom.')
