"""Device mesh, shardings of the train state and batches, multi-host start-up.

One mesh over all devices with the single axis 'data'. The global batch is split
over it; the train state is replicated except where `config.sharding.param_rules`
maps a parameter path to a PartitionSpec (the hook for sharding large params).

Multi-host: `maybe_initialize_distributed()` calls `jax.distributed.initialize`
only when the environment describes several processes:
  * JAX_COORDINATOR_ADDRESS (host:port of process 0), JAX_NUM_PROCESSES,
    JAX_PROCESS_ID (set them on every host, e.g. from a launcher script), or
  * a Cloud TPU pod / SLURM / Open MPI environment that JAX detects itself
    (TPU_WORKER_HOSTNAMES with several hosts, SLURM_NTASKS > 1,
    OMPI_COMM_WORLD_SIZE > 1).
A single host starts without it (initialize fails on a lone non-TPU host).
"""

import os
import re
from typing import Any, Dict, Optional, Sequence

from absl import logging
import jax
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec as P
import numpy as np

DATA_AXIS = 'data'


def maybe_initialize_distributed() -> bool:
  """Initialises multi-process JAX when the environment asks for it (see module doc)."""
  env = os.environ
  if int(env.get('JAX_NUM_PROCESSES', '1')) > 1:
    # CPU hosts need a cross-process collectives backend; gloo ships with jaxlib.
    jax.config.update('jax_cpu_collectives_implementation', 'gloo')
    jax.distributed.initialize(
        coordinator_address=env['JAX_COORDINATOR_ADDRESS'],
        num_processes=int(env['JAX_NUM_PROCESSES']),
        process_id=int(env['JAX_PROCESS_ID']))
    return True
  auto = (len(env.get('TPU_WORKER_HOSTNAMES', '').split(',')) > 1
          or int(env.get('SLURM_NTASKS', '1')) > 1
          or int(env.get('OMPI_COMM_WORLD_SIZE', '1')) > 1)
  if auto:
    jax.distributed.initialize()
    return True
  return False


def make_mesh(devices: Optional[Sequence[jax.Device]] = None) -> Mesh:
  """A 1-D mesh ('data',) over `devices` (default: all devices of all processes)."""
  devices = jax.devices() if devices is None else list(devices)
  # Auto axis: the memory's EMA update contracts over the batch axis, which
  # explicit-sharding mode would reject without annotations.
  return jax.make_mesh((len(devices),), (DATA_AXIS,),
                       axis_types=(AxisType.Auto,), devices=devices)


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """Leading (batch) axis split over 'data', the rest replicated."""
  return NamedSharding(mesh, P(DATA_AXIS))


def replicate(tree: Any, mesh: Mesh) -> Any:
  """Host arrays (identical on every process) -> arrays replicated on the mesh."""
  sharding = replicated(mesh)

  def put(x):
    x = np.asarray(x)
    return jax.make_array_from_callback(x.shape, sharding, lambda index: x[index])

  return jax.tree_util.tree_map(put, tree)


def _path_str(path) -> str:
  return '/'.join(str(getattr(k, 'key', getattr(k, 'idx', k))) for k in path)


def state_shardings(abstract_state: Any, mesh: Mesh,
                    param_rules: Sequence = ()) -> Any:
  """NamedShardings for a state pytree: replicated unless a rule matches.

  `param_rules`: (regex, spec) pairs; the first regex that `re.fullmatch`es the
  '/'-joined path of a leaf (e.g. 'params/decoder/Conv_0/kernel', or
  'opt_state/.../mu/decoder/Conv_0/kernel' for Adam's moments, hence rules usually
  start with '.*') gives its PartitionSpec, a tuple of mesh axis names or None.
  """
  compiled = [(re.compile(regex), tuple(spec)) for regex, spec in param_rules]

  def sharding(path, leaf):
    name = _path_str(path)
    for regex, spec in compiled:
      if regex.fullmatch(name):
        if len(spec) != len(leaf.shape):
          raise ValueError(
              f'config.sharding.param_rules: {regex.pattern!r} -> {spec} matches '
              f'{name} of shape {leaf.shape}; the spec needs one entry per axis.')
        return NamedSharding(mesh, P(*spec))
    return replicated(mesh)

  return jax.tree_util.tree_map_with_path(sharding, abstract_state)


def shard_batch(batch: Dict[str, np.ndarray], mesh: Mesh) -> Dict[str, jax.Array]:
  """This process's slice of the global batch -> global arrays split over 'data'.

  Every process passes its own rows (B_local = B / process_count); the global
  batch is their concatenation in process order.
  """
  sharding = batch_sharding(mesh)

  def put(x):
    x = np.asarray(x)
    global_shape = (x.shape[0] * jax.process_count(),) + x.shape[1:]
    return jax.make_array_from_process_local_data(sharding, x, global_shape)

  return jax.tree_util.tree_map(put, batch)


def log_topology(mesh: Mesh) -> None:
  logging.info('JAX process %d of %d, %d local / %d global devices, mesh %s',
               jax.process_index(), jax.process_count(), jax.local_device_count(),
               jax.device_count(), dict(mesh.shape))
