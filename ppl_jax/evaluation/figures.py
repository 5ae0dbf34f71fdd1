"""PNG figures of poses and priors (paper Figs. 5-7), with matplotlib's Agg renderer.

Inputs are numpy arrays: images [.., H, W, 3] as uint8 or float in [-1, 1];
keypoints (x, y) normalised to [-1, 1] (half-pixel convention, x along the width);
connectivity W [N, N]. A link (i, j) is drawn with opacity w_ij / max(W), so its
intensity follows the learned connectivity strength (paper Fig. 5a/b).

Image grids are laid out pixel-exactly: each panel is an H x W image scaled by an
integer `scale`, without margins, so the PNG is (rows * H * scale) x (cols * W *
scale) and data pixel (x, y) of panel (r, c) sits at PNG pixel ((c * W + x + 0.5) *
scale, (r * H + y + 0.5) * scale). Figures are built on `matplotlib.figure.Figure`
directly (not pyplot), so no global backend or figure state is touched.
"""

import math
import os
from typing import Mapping, Optional, Sequence

import matplotlib
from matplotlib.figure import Figure
import numpy as np
from PIL import Image, ImageDraw

_DPI = 100
LINK_COLOR = (1.0, 0.15, 0.1)
PRIOR_LINK_COLOR = (0.1, 0.2, 0.8)


def _display(image):
  """RGB float [H, W, 3] in [0, 1] from uint8 or [-1, 1] float."""
  image = np.asarray(image)
  if image.ndim != 3 or image.shape[-1] != 3:
    raise ValueError(f'images must be [H, W, 3], got one of shape {image.shape}.')
  if image.dtype == np.uint8:
    return image.astype(np.float32) / 255.0
  return np.clip((image.astype(np.float32) + 1.0) / 2.0, 0.0, 1.0)


def _to_pixels(keypoints, height, width):
  """(x, y) in [-1, 1] -> pixel coordinates with centres at integers."""
  keypoints = np.asarray(keypoints, np.float64)
  return ((keypoints + 1.0) * np.array([width, height]) - 1.0) / 2.0


def draw_pose_on_frame(frame: np.ndarray, points: np.ndarray, connectivity: np.ndarray
                       ) -> np.ndarray:
  """frame uint8 [H, W, 3] with links (opacity w_ij / max(W)) and keypoints drawn.

  points: [N, 2] pixels (centres at integers). PIL rather than matplotlib: one
  frame at the video's own resolution in about a millisecond.
  """
  height, width = frame.shape[:2]
  line_width = max(1, round(min(height, width) / 128))
  radius = max(2, round(min(height, width) / 100))
  layer = Image.new('RGBA', (width, height), (0, 0, 0, 0))
  draw = ImageDraw.Draw(layer)
  weights = np.asarray(connectivity, np.float64)
  top = weights.max()
  rows, cols = np.triu_indices(len(points), k=1)
  if top > 0:
    link = tuple(int(255 * c) for c in LINK_COLOR)
    # Weakest first, so a strong link is never hidden under a weak one.
    for k in np.argsort(weights[rows, cols], kind='stable'):
      alpha = int(round(255 * weights[rows[k], cols[k]] / top))
      if alpha > 0:
        (x0, y0), (x1, y1) = points[rows[k]], points[cols[k]]
        draw.line([(float(x0), float(y0)), (float(x1), float(y1))],
                  fill=link + (alpha,), width=line_width)
  colors = matplotlib.colormaps['tab20'](np.arange(len(points)) % 20)
  for (x, y), color in zip(points, colors):
    fill = tuple(int(255 * c) for c in color[:3]) + (255,)
    draw.ellipse([float(x) - radius, float(y) - radius, float(x) + radius,
                  float(y) + radius], fill=fill, outline=(255, 255, 255, 255))
  image = Image.alpha_composite(Image.fromarray(frame).convert('RGBA'), layer)
  return np.asarray(image.convert('RGB'))


def _check_pose(keypoints, connectivity):
  keypoints = np.asarray(keypoints, np.float64)
  connectivity = np.asarray(connectivity, np.float64)
  num_parts = keypoints.shape[-2]
  if keypoints.shape[-1] != 2 or connectivity.shape != (num_parts, num_parts):
    raise ValueError(f'keypoints must be [..., N, 2] and connectivity [N, N]; got '
                     f'{keypoints.shape} and {connectivity.shape}.')
  return keypoints, connectivity


def _draw_pose(ax, points, connectivity, color, linewidth, marker_size):
  """Links with opacity w_ij / max(W), then the keypoints coloured by index."""
  top = connectivity.max()
  num_parts = len(points)
  if top > 0:
    for i in range(num_parts):
      for j in range(i + 1, num_parts):
        alpha = float(connectivity[i, j] / top)
        if alpha > 1e-3:
          ax.plot(points[[i, j], 0], points[[i, j], 1], color=color, alpha=min(alpha, 1.0),
                  linewidth=linewidth, solid_capstyle='round')
  colors = matplotlib.colormaps['tab20'](np.arange(num_parts) % 20)
  ax.scatter(points[:, 0], points[:, 1], s=marker_size, c=colors, edgecolors='white',
             linewidths=0.5, zorder=3)


def _grid(rows, cols, height, width, scale):
  """A figure of rows x cols margin-free panels, each H x W data pixels times scale."""
  figure = Figure(figsize=(cols * width * scale / _DPI, rows * height * scale / _DPI),
                  dpi=_DPI)
  axes = np.empty((rows, cols), object)
  for r in range(rows):
    for c in range(cols):
      ax = figure.add_axes((c / cols, 1.0 - (r + 1) / rows, 1.0 / cols, 1.0 / rows))
      ax.set_axis_off()
      ax.set_xlim(-0.5, width - 0.5)
      ax.set_ylim(height - 0.5, -0.5)
      axes[r, c] = ax
  return figure, axes


def _show(ax, image):
  ax.imshow(_display(image), interpolation='nearest', aspect='auto',
            extent=(-0.5, image.shape[1] - 0.5, image.shape[0] - 0.5, -0.5))


def _save(figure, path):
  directory = os.path.dirname(os.fspath(path))
  if directory:
    os.makedirs(directory, exist_ok=True)
  figure.savefig(path, dpi=_DPI, format='png')


def save_pose_overlays(images: np.ndarray, keypoints: np.ndarray, connectivity: np.ndarray,
                       path: str, *, columns: int = 8, show_frames: bool = True,
                       scale: int = 2) -> None:
  """Fig. 5a/b: frames (if show_frames) above the same frames with their poses.

  images [B, H, W, 3]; keypoints [B, N, 2]; connectivity [N, N]. With R =
  ceil(B / columns) rows of frames the PNG has 2R (or R) rows of min(B, columns)
  panels; panel k of the pose rows is at row (R if show_frames else 0) + k // columns.
  """
  images = np.asarray(images)
  keypoints, connectivity = _check_pose(keypoints, connectivity)
  if images.ndim != 4 or keypoints.shape[0] != images.shape[0]:
    raise ValueError(f'save_pose_overlays needs images [B, H, W, 3] and keypoints '
                     f'[B, N, 2]; got {images.shape} and {keypoints.shape}.')
  batch, height, width = images.shape[:3]
  cols = min(batch, columns)
  block = math.ceil(batch / cols)
  figure, axes = _grid(2 * block if show_frames else block, cols, height, width, scale)
  for ax in axes.ravel():
    _show(ax, np.zeros((height, width, 3), np.uint8))   # black where no frame is left
  for k in range(batch):
    r, c = divmod(k, cols)
    if show_frames:
      _show(axes[r, c], images[k])
    pose_ax = axes[r + (block if show_frames else 0), c]
    _show(pose_ax, images[k])
    _draw_pose(pose_ax, _to_pixels(keypoints[k], height, width), connectivity, LINK_COLOR,
               linewidth=1.5 * scale, marker_size=8 * scale)
  _save(figure, path)


def save_occlusion_strip(inputs: np.ndarray, keypoints: np.ndarray, connectivity: np.ndarray,
                         path: str, *, original: Optional[np.ndarray] = None,
                         original_keypoints: Optional[np.ndarray] = None,
                         scale: int = 2) -> None:
  """Fig. 5c: the input of every iteration (top) and its estimated pose (bottom).

  inputs [K, H, W, 3]: the occluded frame, then the reconstructions fed back
  (`[I] + recon[:-1]` of `make_iterative_inference`); keypoints [K, N, 2]: the
  keypoints of each iteration. original / original_keypoints ([H, W, 3] / [N, 2]):
  the unoccluded frame and its pose, drawn as an extra first column.
  """
  inputs = np.asarray(inputs)
  keypoints, connectivity = _check_pose(keypoints, connectivity)
  if inputs.ndim != 4 or keypoints.shape[0] != inputs.shape[0]:
    raise ValueError(f'save_occlusion_strip needs inputs [K, H, W, 3] and keypoints '
                     f'[K, N, 2]; got {inputs.shape} and {keypoints.shape}.')
  if (original is None) != (original_keypoints is None):
    raise ValueError('save_occlusion_strip: give both original and original_keypoints.')
  frames, poses = list(inputs), list(keypoints)
  if original is not None:
    frames.insert(0, np.asarray(original))
    poses.insert(0, np.asarray(original_keypoints, np.float64))
  height, width = inputs.shape[1:3]
  figure, axes = _grid(2, len(frames), height, width, scale)
  for c, (frame, pose) in enumerate(zip(frames, poses)):
    _show(axes[0, c], frame)
    _show(axes[1, c], frame)
    _draw_pose(axes[1, c], _to_pixels(pose, height, width), connectivity, LINK_COLOR,
               linewidth=1.5 * scale, marker_size=8 * scale)
  _save(figure, path)


def save_prior_evolution(priors: np.ndarray, connectivities: np.ndarray, path: str, *,
                         labels: Optional[Sequence[str]] = None, panel: int = 128) -> None:
  """Fig. 5d: the prior (T with links by W) of each checkpoint, top to bottom.

  priors [C, N, 2]; connectivities [C, N, N]; labels: C captions (e.g. 'epoch 5').
  The PNG is panel x (C * panel) pixels, white background.
  """
  priors = np.asarray(priors, np.float64)
  connectivities = np.asarray(connectivities, np.float64)
  if priors.ndim != 3 or connectivities.ndim != 3 or len(priors) != len(connectivities):
    raise ValueError(f'save_prior_evolution needs priors [C, N, 2] and connectivities '
                     f'[C, N, N]; got {priors.shape} and {connectivities.shape}.')
  if labels is not None and len(labels) != len(priors):
    raise ValueError(f'save_prior_evolution: {len(labels)} labels for {len(priors)} priors.')
  figure, axes = _grid(len(priors), 1, panel, panel, 1)
  white = np.full((panel, panel, 3), 255, np.uint8)
  for c, (prior, connectivity) in enumerate(zip(priors, connectivities)):
    _check_pose(prior, connectivity)
    ax = axes[c, 0]
    _show(ax, white)
    _draw_pose(ax, _to_pixels(prior, panel, panel), connectivity, PRIOR_LINK_COLOR,
               linewidth=2.0, marker_size=16)
    if labels is not None:
      ax.text(2, 2, labels[c], va='top', ha='left', fontsize=8)
    if c:
      ax.axhline(-0.5, color='0.6', linewidth=1)
  _save(figure, path)


def save_prior(prior: np.ndarray, connectivity: np.ndarray, path: str, *,
               size: int = 256) -> None:
  """The learned prior: T with links by W (left) and the matrix W (right).

  prior [N, 2] in [-1, 1]; connectivity [N, N]. The PNG is (2 * size) x size pixels.
  """
  prior, connectivity = _check_pose(prior, connectivity)
  figure = Figure(figsize=(2 * size / _DPI, size / _DPI), dpi=_DPI)
  pose_ax = figure.add_axes((0.02, 0.04, 0.46, 0.88))
  pose_ax.set_xlim(-1.05, 1.05)
  pose_ax.set_ylim(1.05, -1.05)          # y grows downwards, as in the image
  pose_ax.set_aspect('equal')
  pose_ax.set_xticks([])
  pose_ax.set_yticks([])
  pose_ax.set_title('keypoint prior T', fontsize=8)
  _draw_pose(pose_ax, prior, connectivity, PRIOR_LINK_COLOR, linewidth=2.0, marker_size=20)
  matrix_ax = figure.add_axes((0.56, 0.08, 0.34, 0.8))
  shown = matrix_ax.imshow(connectivity, cmap='viridis', interpolation='nearest')
  matrix_ax.set_title('connectivity W', fontsize=8)
  matrix_ax.tick_params(labelsize=6)
  colorbar = figure.colorbar(shown, ax=matrix_ax, fraction=0.08)
  colorbar.ax.tick_params(labelsize=6)
  _save(figure, path)


def save_error_vs_iteration(errors: Mapping[str, Sequence[float]], path: str, *,
                            legend_title: str = 'mask ratio',
                            ylabel: str = 'L2 error (% of image size)',
                            size: Sequence[int] = (480, 360)) -> None:
  """Figs. 6-7: error against the inference iteration, one line per masking.

  errors: {label: per-iteration errors} (e.g. `occlusion_sweep` results'
  details['per_iteration'], labelled by mask ratio or mask size). size: (width,
  height) of the PNG in pixels.
  """
  if not errors:
    raise ValueError('save_error_vs_iteration: no error curve given.')
  figure = Figure(figsize=(size[0] / _DPI, size[1] / _DPI), dpi=_DPI)
  ax = figure.add_subplot()
  for label, values in errors.items():
    values = np.asarray(values, np.float64)
    ax.plot(np.arange(len(values)), values, marker='o', label=str(label))
  ax.set_xlabel('iteration')
  ax.set_ylabel(ylabel)
  ax.xaxis.get_major_locator().set_params(integer=True)
  ax.legend(title=legend_title, fontsize=7, title_fontsize=7)
  figure.tight_layout()
  _save(figure, path)
