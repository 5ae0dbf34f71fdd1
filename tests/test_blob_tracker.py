"""The background-subtraction tracker against hand-computed cases."""

import numpy as np

from ppl_jax.evaluation import blob_tracker


def _scene():
  background = np.full((40, 60, 3), 100, np.uint8)
  image = background.copy()
  image[10:14, 5:45, 1] = 250      # a 4 x 40 horizontal bar: the largest blob
  image[30, 50] = 250              # a one-pixel speck elsewhere
  return image, background


def test_blob_points_of_a_bar():
  image, background = _scene()
  points = blob_tracker.blob_points(image, background, 0.1)
  # Centroid of rows 10..13, columns 5..44; the major axis is x, with the sample standard
  # deviation of 40 consecutive columns, each repeated 4 times.
  cols = np.repeat(np.arange(5, 45), 4).astype(np.float64)
  half = 2 * cols.std(ddof=1)
  np.testing.assert_allclose(points, [[24.5, 11.5], [24.5 - half, 11.5], [24.5 + half, 11.5]],
                             atol=1e-9)


def test_blob_points_without_foreground_is_the_centre():
  _, background = _scene()
  np.testing.assert_allclose(blob_tracker.blob_points(background, background, 0.1),
                             [[29.5, 19.5]] * 3)


def test_track_uses_each_folders_median():
  image, background = _scene()
  # Folder a: the bar moves right by one column per image over background 100.
  a = [np.roll(image, shift, axis=1) for shift in range(5)]
  # Folder b: the same bar over another background; its median is b's own.
  other = background.copy()
  other[..., 2] = 30
  b = []
  for shift in range(3):
    frame = np.roll(image, 3 * shift, axis=1).copy()
    frame[..., 2] = 30
    b.append(frame)
  frames = a + b
  names = [f'a/{i}.png' for i in range(5)] + [f'b/{i}.png' for i in range(3)]
  points = blob_tracker.track(lambda i: frames[i], names, 0.1)
  for i, frame in enumerate(frames):
    group = a if i < 5 else b
    median = np.sort(np.stack(group), axis=0)[(len(group) - 1) // 2]
    np.testing.assert_allclose(points[i], blob_tracker.blob_points(frame, median, 0.1))
  # Against folder a's median, folder b's frames differ everywhere (another blue channel):
  # the whole image would be one blob centred on the image.
  wrong = blob_tracker.blob_points(b[0], np.sort(np.stack(a), axis=0)[2], 0.1)
  np.testing.assert_allclose(wrong[0], [29.5, 19.5])
  assert not np.allclose(points[5, 0], [29.5, 19.5])
