"""The optimizer: Adam(W) with a 512x learning rate on the connectivity logits.

Parameters are labelled by path and routed through `optax.multi_transform`:
  'connectivity'  params['connectivity']['logits'] (and 'logits_wide')
                                                       lr * connectivity_lr_multiplier,
                                                       0 before connectivity_start_step
  'frozen'        a prior that config.model says is not trainable   optax.set_to_zero
  'base'          everything else                                  lr
"""

from typing import Any, Callable, Dict, Union

import ml_collections
import optax
from flax import traverse_util

CONNECTIVITY_PATH = ('connectivity', 'logits')
WIDE_CONNECTIVITY_PATH = ('connectivity', 'logits_wide')
KEYPOINT_PRIOR_PATH = ('keypoint_prior', 'points')


def param_labels(params: Any, model_config: ml_collections.ConfigDict) -> Any:
  """A pytree like `params` with 'base' | 'connectivity' | 'frozen' leaves."""
  frozen = set()
  if not model_config.connectivity_trainable:
    frozen |= {CONNECTIVITY_PATH, WIDE_CONNECTIVITY_PATH}
  if (model_config.keypoint_prior in ('predefined', 'random')
      and not model_config.keypoint_prior_trainable):
    frozen.add(KEYPOINT_PRIOR_PATH)

  def label(path, _):
    path = tuple(str(p) for p in path)
    for special in frozen | {CONNECTIVITY_PATH, WIDE_CONNECTIVITY_PATH}:
      if path[-len(special):] == special:
        return 'frozen' if special in frozen else 'connectivity'
    return 'base'

  flat = traverse_util.flatten_dict(params)
  return traverse_util.unflatten_dict({k: label(k, v) for k, v in flat.items()})


def learning_rate_schedule(optim_config: ml_collections.ConfigDict,
                           num_train_steps: int) -> Callable[[Any], Any]:
  """The base learning rate as an optax schedule of the step."""
  lr = optim_config.learning_rate
  if optim_config.schedule == 'constant':
    if optim_config.warmup_steps:
      return optax.join_schedules(
          [optax.linear_schedule(0.0, lr, optim_config.warmup_steps),
           optax.constant_schedule(lr)], [optim_config.warmup_steps])
    return optax.constant_schedule(lr)
  if optim_config.schedule == 'cosine':
    return optax.cosine_decay_schedule(lr, num_train_steps)
  if optim_config.schedule == 'warmup_cosine':
    return optax.warmup_cosine_decay_schedule(
        0.0, lr, optim_config.warmup_steps, num_train_steps)
  raise ValueError(f'config.optim.schedule={optim_config.schedule!r} is unknown.')


def _adam(optim_config, learning_rate: Union[float, Callable[[Any], Any]]):
  if optim_config.optimizer == 'adam':
    return optax.adam(learning_rate, eps=optim_config.eps)
  if optim_config.optimizer == 'adamw':
    return optax.adamw(learning_rate, eps=optim_config.eps,
                       weight_decay=optim_config.weight_decay)
  raise ValueError(f'config.optim.optimizer={optim_config.optimizer!r} is unknown.')


def make_optimizer(config: ml_collections.ConfigDict) -> optax.GradientTransformation:
  """Optimizer for the whole `params` tree of `build_model(config)`."""
  optim_config = config.optim
  schedule = learning_rate_schedule(optim_config, config.num_train_steps)
  multiplier = optim_config.connectivity_lr_multiplier
  start = optim_config.connectivity_start_step

  def connectivity_lr(step):
    return multiplier * schedule(step) * (step >= start)

  transforms: Dict[str, optax.GradientTransformation] = {
      'base': _adam(optim_config, schedule),
      'connectivity': _adam(optim_config, connectivity_lr),
      'frozen': optax.set_to_zero(),
  }
  tx = optax.multi_transform(
      transforms, lambda params: param_labels(params, config.model))
  if optim_config.grad_clip_norm > 0:
    tx = optax.chain(optax.clip_by_global_norm(optim_config.grad_clip_norm), tx)
  return tx
