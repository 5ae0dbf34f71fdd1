"""Did training discover the parts? Part coverage and heatmap reliance.

- Part coverage: a ground-truth joint is covered when one detected keypoint lies within
  `radius` (units of the image side; 0.03 = 3%) of it on at least `min_fraction` of the
  frames where the joint is labelled. Unlike the matched error, a keypoint may cover
  several joints and the score does not average a missed limb away.
- Keypoint attachment: for each keypoint, the point of the skeleton it follows best, a fixed
  fraction t along one bone (a, b), i.e. gt_a + t (gt_b - gt_a), and its mean distance from it
  over the frames. A keypoint within `radius` of its point is attached: it means the same
  place on the body in every frame; a detached one wanders between parts (or off the body),
  which the matched error and coverage show only as large errors.
- Heatmap reliance: how much the decoder needs the link heatmap S, as
  L1(I_recon with S = 0, I) / L1(I_recon, I) - 1 on the same frames and references; near 0
  means the decoder reconstructs I from its context alone and ignores the keypoints.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

COVERAGE_RADIUS = 0.03
COVERAGE_MIN_FRACTION = 0.8


@dataclasses.dataclass(frozen=True)
class Coverage:
  """covered: bool [G]; best_fraction: float [G], the best keypoint's fraction of labelled
  frames within the radius; keypoint: int [G], that keypoint."""
  covered: np.ndarray
  best_fraction: np.ndarray
  keypoint: np.ndarray

  @property
  def num_covered(self) -> int:
    return int(self.covered.sum())


def part_coverage(predicted: np.ndarray, ground_truth: np.ndarray, visible: np.ndarray, *,
                  radius: float = COVERAGE_RADIUS,
                  min_fraction: float = COVERAGE_MIN_FRACTION) -> Coverage:
  """Coverage of G joints by N keypoints over F frames.

  predicted [F, N, 2] and ground_truth [F, G, 2] in units of the image side; visible bool
  [F, G]. A joint never labelled is not covered.
  """
  predicted = np.asarray(predicted, np.float64)
  ground_truth = np.asarray(ground_truth, np.float64)
  visible = np.asarray(visible, bool)
  if (predicted.ndim != 3 or ground_truth.ndim != 3 or len(predicted) != len(ground_truth)
      or visible.shape != ground_truth.shape[:2]):
    raise ValueError(f'part_coverage needs predicted [F, N, 2], ground_truth [F, G, 2], '
                     f'visible [F, G]; got {predicted.shape}, {ground_truth.shape}, '
                     f'{visible.shape}.')
  distance = np.linalg.norm(predicted[:, :, None] - ground_truth[:, None], axis=-1)  # F,N,G
  near = (distance < radius) & visible[:, None]
  fraction = near.sum(axis=0) / np.maximum(visible.sum(axis=0), 1)[None]             # N, G
  best = fraction.argmax(axis=0)
  best_fraction = fraction[best, np.arange(fraction.shape[1])]
  covered = (best_fraction >= min_fraction) & visible.any(axis=0)
  return Coverage(covered=covered, best_fraction=best_fraction, keypoint=best)


ATTACHMENT_FRACTIONS = 21   # t in 0, 0.05, ..., 1 along each bone


@dataclasses.dataclass(frozen=True)
class Attachment:
  """distance float [N]: mean distance to the best skeleton point; bone int [N]: its bone
  (index into the skeleton); fraction float [N]: its t; attached bool [N]: distance < radius."""
  distance: np.ndarray
  bone: np.ndarray
  fraction: np.ndarray
  attached: np.ndarray

  @property
  def num_attached(self) -> int:
    return int(self.attached.sum())


def keypoint_attachment(predicted: np.ndarray, ground_truth: np.ndarray, visible: np.ndarray,
                        skeleton, *, radius: float = COVERAGE_RADIUS) -> Attachment:
  """Attachment of N keypoints to the bones (pairs of joint indices) of a G-joint skeleton.

  predicted [F, N, 2] and ground_truth [F, G, 2] in units of the image side; visible bool
  [F, G]; a bone counts on the frames where both its joints are labelled.
  """
  predicted = np.asarray(predicted, np.float64)
  ground_truth = np.asarray(ground_truth, np.float64)
  visible = np.asarray(visible, bool)
  bones = np.asarray(skeleton, np.int64).reshape(-1, 2)
  t = np.linspace(0.0, 1.0, ATTACHMENT_FRACTIONS)
  start, end = ground_truth[:, bones[:, 0]], ground_truth[:, bones[:, 1]]      # F, E, 2
  points = start[:, :, None] + t[None, None, :, None] * (end - start)[:, :, None]  # F,E,T,2
  both = (visible[:, bones[:, 0]] & visible[:, bones[:, 1]]).astype(np.float64)  # F, E
  distance = np.linalg.norm(predicted[:, :, None, None] - points[:, None], axis=-1)  # F,N,E,T
  mean = (np.einsum('fnet,fe->net', distance, both)
          / np.maximum(both.sum(axis=0), 1)[None, :, None])
  mean = np.where(both.any(axis=0)[None, :, None], mean, np.inf)
  flat = mean.reshape(len(mean), -1).argmin(axis=1)
  bone, index = np.unravel_index(flat, mean.shape[1:])
  best = mean[np.arange(len(mean)), bone, index]
  return Attachment(distance=best, bone=bone, fraction=t[index], attached=best < radius)


def per_video_attachment(predicted: np.ndarray, ground_truth: np.ndarray, visible: np.ndarray,
                         skeleton, video: np.ndarray, *,
                         radius: float = COVERAGE_RADIUS) -> float:
  """Mean over videos of `keypoint_attachment(...).num_attached` within each video (video
  int [F] per frame). Well above the all-frames count: each keypoint holds one body point
  within a video but a different one in other videos (its identity is not shared)."""
  video = np.asarray(video)
  counts = [keypoint_attachment(predicted[video == v], ground_truth[video == v],
                                visible[video == v], skeleton, radius=radius).num_attached
            for v in np.unique(video)]
  return float(np.mean(counts))


def inversion_shift(model, variables, images: np.ndarray, *, batch_size: int = 64
                    ) -> np.ndarray:
  """Mean distance [N], in units of the image side, each keypoint T' moves when the frames
  [F, H, W, 3] in [-1, 1] are contrast-inverted (-I): a figure lighter than its scene and
  one darker should get the same keypoints."""
  estimate = jax.jit(lambda x: model.apply(variables, x, train=False, method=model.estimate)[0])
  shifts = []
  for start in range(0, len(images), batch_size):
    chunk = jnp.asarray(images[start:start + batch_size], jnp.float32)
    moved = np.asarray(estimate(-chunk), np.float64) - np.asarray(estimate(chunk), np.float64)
    shifts.append(np.linalg.norm(moved, axis=-1) / 2)   # [-1, 1] spans the side twice
  return np.concatenate(shifts).mean(axis=0)


def heatmap_reliance(model, variables, images, references) -> float:
  """L1(decode(ref, S=0), I) / L1(decode(ref, S), I) - 1 over images / references
  [B, H, W, 3] in [-1, 1] (references as the decoder saw them in training)."""

  def losses(module, image, reference):
    keypoints, _ = module.estimate(image, train=False)
    with_links, _ = module.render_and_decode(reference, keypoints, train=False)
    zero = jnp.zeros_like(module.connectivity.per_width())
    without, _ = module.render_and_decode(reference, keypoints, train=False, link_weights=zero)
    return (jnp.mean(jnp.abs(with_links - image)), jnp.mean(jnp.abs(without - image)))

  with_links, without = model.apply(variables, images, references, method=losses)
  return float(without) / max(float(with_links), 1e-12) - 1.0
