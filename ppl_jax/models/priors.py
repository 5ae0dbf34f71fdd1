"""Explicit pose priors (paper Table 3): keypoint prior T and connectivity prior W, and templates.

Parameter paths the optimizer relies on (frozen / trainable, 512x lr):
  params['keypoint_prior']['points']  [N, 2]  ('predefined' | 'random' keypoint prior)
  params['connectivity']['logits']    [N, N]  (every variant)
  params['connectivity']['logits_wide'] [N, N] (a wide link map, config.model.wide_thick > 0)
W = softplus((L + L^T) / 2) with a zero diagonal: symmetric and positive off the diagonal.
The logits are stored plainly; the 512x learning rate is the optimizer's job.

Templates give points in [-1, 1] (x right, y down) and skeleton edges:
  'human16'     16 joints (head ... ankles), 15 edges (a tree);
  'quadruped10' 10 points (nose, head, neck, withers, rump, tail tip, four paws), 9 edges;
  'humanoid15'  the synthetic humanoid's 15 joints and skeleton (ppl_jax.data.synthetic);
  'quadruped18' the synthetic quadruped's 18 joints and skeleton (side view, head left);
  'ring'        any N: points on a circle of radius 0.5, consecutive points joined.
"""

from typing import Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from ppl_jax.data import synthetic

# Connectivity logits of the 'predefined' variant: softplus(EDGE_LOGIT) = 1 on template edges,
# softplus(OFF_EDGE_LOGIT) ~ 2.5e-3 elsewhere (the random variant starts near 0.018 everywhere).
EDGE_LOGIT = float(np.log(np.expm1(1.0)))
OFF_EDGE_LOGIT = -6.0
RANDOM_LOGIT_MEAN = -4.0        # release init: logits ~ randn - 4
RANDOM_POINT_RANGE = 0.5        # 'random' keypoint prior ~ U(-0.5, 0.5)^2

_HUMAN16_POINTS = (
    (0.0, -0.75),    # 0 head
    (0.0, -0.55),    # 1 neck
    (-0.2, -0.5),    # 2 right shoulder
    (-0.3, -0.25),   # 3 right elbow
    (-0.35, 0.0),    # 4 right wrist
    (0.2, -0.5),     # 5 left shoulder
    (0.3, -0.25),    # 6 left elbow
    (0.35, 0.0),     # 7 left wrist
    (0.0, 0.05),     # 8 pelvis
    (-0.12, 0.1),    # 9 right hip
    (-0.14, 0.4),    # 10 right knee
    (-0.15, 0.7),    # 11 right ankle
    (0.12, 0.1),     # 12 left hip
    (0.14, 0.4),     # 13 left knee
    (0.15, 0.7),     # 14 left ankle
    (0.0, -0.25),    # 15 thorax
)
_HUMAN16_EDGES = ((0, 1), (1, 2), (2, 3), (3, 4), (1, 5), (5, 6), (6, 7), (1, 15), (15, 8),
                  (8, 9), (9, 10), (10, 11), (8, 12), (12, 13), (13, 14))

_QUADRUPED10_POINTS = (
    (-0.8, -0.3),    # 0 nose
    (-0.6, -0.4),    # 1 head
    (-0.4, -0.2),    # 2 neck
    (-0.2, -0.15),   # 3 withers
    (0.4, -0.15),    # 4 rump (tail base)
    (0.7, -0.35),    # 5 tail tip
    (-0.25, 0.5),    # 6 front left paw
    (-0.15, 0.5),    # 7 front right paw
    (0.35, 0.5),     # 8 rear left paw
    (0.45, 0.5),     # 9 rear right paw
)
_QUADRUPED10_EDGES = ((0, 1), (1, 2), (2, 3), (3, 4), (4, 5), (3, 6), (3, 7), (4, 8), (4, 9))

# Rest poses for the synthetic figures, in the joint order of ppl_jax.data.synthetic.
# The human16 rest pose without its extra joint, in the synthetic humanoid's order
# (head, neck, pelvis, right arm, left arm, right leg, left leg).
_HUMANOID15_POINTS = tuple(
    _HUMAN16_POINTS[k] for k in (0, 1, 8, 2, 3, 4, 5, 6, 7, 9, 10, 11, 12, 13, 14))
_QUADRUPED18_POINTS = (
    (-0.7, -0.35), (-0.5, -0.2), (-0.3, -0.1), (0.35, -0.1),    # head, neck, withers, croup
    (0.55, -0.2), (0.75, -0.3),                                 # tail
    (-0.32, 0.15), (-0.3, 0.35), (-0.3, 0.55),                  # front left leg
    (-0.25, 0.15), (-0.22, 0.35), (-0.22, 0.55),                # front right leg
    (0.35, 0.15), (0.4, 0.35), (0.38, 0.55),                    # hind left leg
    (0.42, 0.15), (0.47, 0.35), (0.45, 0.55),                   # hind right leg
)

TEMPLATES = ('human16', 'quadruped10', 'humanoid15', 'quadruped18', 'ring')


def template(name: str, num_parts: int):
  """(points float32 [N, 2], edges tuple of (i, j) with i < j) of a named template."""
  if name == 'human16':
    points, edges = _HUMAN16_POINTS, _HUMAN16_EDGES
  elif name == 'quadruped10':
    points, edges = _QUADRUPED10_POINTS, _QUADRUPED10_EDGES
  elif name == 'humanoid15':
    points, edges = _HUMANOID15_POINTS, synthetic.HUMANOID_SKELETON
  elif name == 'quadruped18':
    points, edges = _QUADRUPED18_POINTS, synthetic.QUADRUPED_SKELETON
  elif name == 'ring':
    angle = 2 * np.pi * np.arange(num_parts) / num_parts
    points = 0.5 * np.stack([np.sin(angle), -np.cos(angle)], axis=-1)
    edges = tuple((i, i + 1) for i in range(num_parts - 1))
    edges += ((0, num_parts - 1),) if num_parts > 2 else ()
  else:
    raise ValueError(f'config.model.prior_template={name!r} is unknown; use one of {TEMPLATES}.')
  points = np.asarray(points, np.float32)
  if len(points) != num_parts:
    raise ValueError(
        f'config.model.prior_template={name!r} has {len(points)} points but '
        f'config.model.num_parts={num_parts}; pick a matching template or "ring" (any N).')
  return points, tuple((min(i, j), max(i, j)) for i, j in edges)


def connectivity_weights(logits):
  """W [N, N] = softplus((L + L^T) / 2), zero diagonal."""
  sym = 0.5 * (logits + logits.T)
  return jax.nn.softplus(sym) * (1.0 - jnp.eye(logits.shape[0], dtype=sym.dtype))


class Connectivity(nn.Module):
  """Connectivity prior W [N, N] from free logits ('random': init_std * randn + init_mean,
  release: randn - 4; 'predefined': template).

  With `wide_init_mean` set (ours; config.model.wide_thick > 0) a second W_wide of its own
  logits ('logits_wide', init_std * randn + wide_init_mean) weights the wide link map.
  """
  num_parts: int
  init_kind: str = 'random'      # random | predefined
  template_name: str = 'human16'
  init_mean: float = RANDOM_LOGIT_MEAN
  init_std: float = 1.0
  wide_init_mean: Optional[float] = None

  def setup(self):
    shape = (self.num_parts, self.num_parts)
    self.logits = self.param('logits', self._init_logits, shape)
    if self.wide_init_mean is not None:
      self.logits_wide = self.param(
          'logits_wide',
          lambda key, s: self.init_std * jax.random.normal(key, s) + self.wide_init_mean, shape)

  def _init_logits(self, key, shape):
    if self.init_kind == 'random':
      return self.init_std * jax.random.normal(key, shape, jnp.float32) + self.init_mean
    if self.init_kind == 'predefined':
      _, edges = template(self.template_name, self.num_parts)
      logits = np.full(shape, OFF_EDGE_LOGIT, np.float32)
      for i, j in edges:
        logits[i, j] = logits[j, i] = EDGE_LOGIT
      return jnp.asarray(logits)
    raise ValueError(
        f'config.model.connectivity_prior={self.init_kind!r}: use random | predefined.')

  def __call__(self):
    """W [N, N]; with a wide map, max(W, W_wide): a pair's strongest link (what edges read)."""
    return self.per_width().max(axis=0)

  def per_width(self):
    """[K, N, N]: W, then W_wide when there is a wide map (K = 1 or 2)."""
    weights = [connectivity_weights(self.logits)]
    if self.wide_init_mean is not None:
      weights.append(connectivity_weights(self.logits_wide))
    return jnp.stack(weights)


class KeypointPrior(nn.Module):
  """Explicit keypoint prior T [N, 2] ('random': U(-0.5, 0.5); 'predefined': template)."""
  num_parts: int
  init_kind: str = 'random'      # random | predefined
  template_name: str = 'human16'

  def _init_points(self, key, shape):
    if self.init_kind == 'random':
      return jax.random.uniform(key, shape, jnp.float32, -RANDOM_POINT_RANGE, RANDOM_POINT_RANGE)
    if self.init_kind == 'predefined':
      return jnp.asarray(template(self.template_name, self.num_parts)[0])
    raise ValueError(
        f'config.model.keypoint_prior={self.init_kind!r}: use memory | predefined | random.')

  @nn.compact
  def __call__(self):
    return self.param('points', self._init_points, (self.num_parts, 2))
