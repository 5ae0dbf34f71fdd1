"""The train state: a plain dict pytree, its layout on the mesh and its initialisation.

  {'params', 'batch_stats', 'memory' (VQ codebook EMA), 'opt_state', 'step' int32 [],
   'rng' uint32 [2]}

A negative step -k marks a state halted by a non-finite loss or gradient at step k: it holds
the state of step k - 1 (`ppl_jax.train`). Training and restoring for inference both build
the layout here, so inference never imports the training loop or the losses.
"""

import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import optax

from ppl_jax import optim
from ppl_jax import sharding
from ppl_jax.models import build_model
from ppl_jax.models.ppl import PPL


@dataclasses.dataclass
class StateLayout:
  """The model, its optimizer and the state's shapes and shardings on `mesh`.

  init(): the initial state, created directly with its shardings (jitted).
  """
  model: PPL
  tx: optax.GradientTransformation
  mesh: jax.sharding.Mesh
  abstract_state: Any   # ShapeDtypeStructs carrying the shardings
  shardings: Any
  init: Callable[[], Any]


def model_variables(state, params=None):
  """The variables `model.apply` takes, from a train state (params overridable)."""
  variables = {'params': state['params'] if params is None else params}
  for collection in ('batch_stats', 'memory'):
    if state[collection]:
      variables[collection] = state[collection]
  return variables


def state_layout(config: ml_collections.ConfigDict, mesh: jax.sharding.Mesh) -> StateLayout:
  """Builds model and optimizer; the state's layout via `jax.eval_shape` (no FLOPs)."""
  model = build_model(config)
  tx = optim.make_optimizer(config)
  size = config.data.image_size

  def init_state():
    params_rng, state_rng = jax.random.split(jax.random.PRNGKey(config.seed))
    image = jnp.zeros((1, size, size, 3), jnp.float32)
    variables = model.init({'params': params_rng}, image, image, train=False)
    params = variables['params']
    return {
        'params': params,
        'batch_stats': variables.get('batch_stats', {}),
        'memory': variables.get('memory', {}),
        'opt_state': tx.init(params),
        'step': jnp.zeros((), jnp.int32),
        'rng': state_rng,
    }

  shapes = jax.eval_shape(init_state)
  shardings = sharding.state_shardings(shapes, mesh, config.sharding.param_rules)
  abstract_state = jax.tree_util.tree_map(
      lambda s, sh: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sh), shapes, shardings)
  return StateLayout(model=model, tx=tx, mesh=mesh, abstract_state=abstract_state,
                     shardings=shardings,
                     init=jax.jit(init_state, out_shardings=shardings))
