"""Training loop and end-of-run evaluation: `train_and_evaluate(config, workdir)`.

The train state (`ppl_jax.train_state`) lives on a 1-D 'data' mesh (replicated unless
config.sharding.param_rules says otherwise); batches are split over 'data'. Initialisation
is `jax.eval_shape` then a jitted init with `out_shardings`; the step is `jax.jit` with
in/out shardings and the state donated. A non-finite loss or gradient halts the state on
the device (its step becomes -(the failed step)); later steps leave it unchanged.
"""

import contextlib
import dataclasses
import functools
import itertools
import json
import time
from typing import Any, Callable, Dict, Optional

from absl import logging
import jax
from jax.experimental import multihost_utils
import jax.numpy as jnp
import ml_collections
import numpy as np

from ppl_jax import checkpointing
from ppl_jax import config as config_lib
from ppl_jax import inference
from ppl_jax import input_pipeline
from ppl_jax import metric_writers
from ppl_jax import ops
from ppl_jax import sharding
from ppl_jax import train_state
from ppl_jax import workdir as workdir_lib
from ppl_jax.data import base
from ppl_jax.evaluation import matching
from ppl_jax.evaluation.mean_pose import mean_training_pose
from ppl_jax.losses import make_image_loss
from ppl_jax.losses.objective import equivariance_loss
from ppl_jax.losses.objective import ppl_objective
from ppl_jax.models.ppl import PPL

_SUMMARY_ROWS = 4


@dataclasses.dataclass
class TrainSetup:
  """Everything compiled for one config on one mesh.

  init(): the initial state, sharded. train_step(state, batch, vgg_params) ->
  (state, metrics). loss_and_grads(state, batch, vgg_params) -> (metrics, mutable
  collection updates, gradients w.r.t. params), replicated. eval_step(state, batch) ->
  batch with 'predicted' [B, N, 2] added, replicated. summary_step(state, batch) ->
  outputs of the first rows.
  """
  layout: train_state.StateLayout  # model, mesh, abstract state, shardings, init
  vgg_params: Any                # replicated on the mesh
  train_step: Callable[..., Any]
  loss_and_grads: Callable[..., Any]
  eval_step: Callable[..., Any]
  summary_step: Callable[..., Any]

  @property
  def model(self) -> PPL:
    return self.layout.model

  @property
  def mesh(self) -> jax.sharding.Mesh:
    return self.layout.mesh

  @property
  def abstract_state(self) -> Any:
    return self.layout.abstract_state

  @property
  def state_shardings(self) -> Any:
    return self.layout.shardings

  @property
  def init(self) -> Callable[[], Any]:
    return self.layout.init



def create_train_setup(config: ml_collections.ConfigDict, mesh: jax.sharding.Mesh, *,
                       random_vgg: bool = False) -> TrainSetup:
  """Builds model, optimizer and image loss, and jits init / train / eval steps."""
  layout = train_state.state_layout(config, mesh)
  model, tx, state_shardings = layout.model, layout.tx, layout.shardings
  image_loss_fn, vgg_params = make_image_loss(
      config.loss, random_vgg=random_vgg, dtype=config.model.dtype,
      remat=config.model.remat_perceptual)
  model_variables = train_state.model_variables
  replicated = sharding.replicated(mesh)
  data = sharding.batch_sharding(mesh)
  loss_config = config.loss
  mutable = [c for c in ('batch_stats', 'memory') if layout.abstract_state[c]]

  def equivariance_term(variables, image, keypoints, rng):
    """L_eq of `image` [B, H, W, 3] and its keypoints T' (objective.equivariance_loss)."""
    matrix, shift = ops.random_similarity(
        rng, image.shape[0], max_degrees=loss_config.equivariance_degrees,
        max_log_scale=loss_config.equivariance_log_scale,
        max_shift=loss_config.equivariance_shift,
        flip_prob=loss_config.equivariance_flip_prob)
    with jax.named_scope('warp'):
      warped = ops.warp_images(image, matrix, shift)
      if loss_config.equivariance_invert_prob:
        warped, _ = ops.invert_some(jax.random.fold_in(rng, 1), warped,
                                    loss_config.equivariance_invert_prob)
    # Train-mode BatchNorm like the main pass; the statistics of this pass are dropped (the
    # state keeps those of the real frames).
    (warped_keypoints, _), _ = model.apply(
        variables, warped, train=True, method=PPL.estimate, mutable=mutable)
    return equivariance_loss(warped_keypoints, keypoints, matrix, shift)

  def loss_and_grads(state, batch, vgg_params):
    step_rng = jax.random.fold_in(state['rng'], state['step'])

    def loss_fn(params):
      outputs, updates = model.apply(
          model_variables(state, params), batch['image'], batch['reference'], train=True,
          mutable=mutable, rngs={'dropout': step_rng})
      # Named scopes label the step's kernels in profiles (benchmarks/step_profile.py).
      with jax.named_scope('objective'):
        loss, metrics = ppl_objective(
            outputs, batch['image'], loss_config, functools.partial(image_loss_fn, vgg_params),
            foreground=batch.get('foreground'),
            foreground_weight=foreground_weight(loss_config, state['step']))
      if loss_config.equivariance_weight:
        with jax.named_scope('equivariance'):
          l_eq = equivariance_term(model_variables(state, params), batch['image'],
                                   outputs['keypoints'],
                                   jax.random.fold_in(step_rng, 1))
        loss = loss + loss_config.equivariance_weight * l_eq
        metrics.update(loss=loss, equivariance_loss=l_eq)
      return loss, (metrics, updates)

    (_, (metrics, updates)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        state['params'])
    return metrics, updates, grads

  def train_step(state, batch, vgg_params):
    metrics, updates, grads = loss_and_grads(state, batch, vgg_params)
    with jax.named_scope('optimizer'):
      param_updates, opt_state = tx.update(grads, state['opt_state'], state['params'])
      params = jax.tree_util.tree_map(jnp.add, state['params'], param_updates)
    metrics['grad_norm'] = _global_norm(grads)
    metrics['param_norm'] = _global_norm(params)
    new_state = dict(state, params=params, opt_state=opt_state,
                     step=state['step'] + 1)
    new_state.update(updates)
    # A non-finite loss or gradient halts the run on the device, with no host sync per step:
    # the state stays that of the last finite step and its step becomes -(the failed step);
    # the host reads it when it next logs or saves (`_halted_at`).
    with jax.named_scope('halt_check'):
      halted = state['step'] < 0
      finite = jnp.isfinite(metrics['loss']) & jnp.isfinite(metrics['grad_norm'])
      keep = halted | ~finite
      new_state = jax.tree_util.tree_map(lambda old, new: jnp.where(keep, old, new),
                                         state, new_state)
      new_state['step'] = jnp.where(halted, state['step'],
                                    jnp.where(finite, state['step'] + 1, -(state['step'] + 1)))
    return new_state, metrics

  def summary_step(state, batch):
    rows = {k: v[:_SUMMARY_ROWS] for k, v in batch.items()}
    outputs = model.apply(model_variables(state), rows['image'], rows['reference'],
                          train=False)
    return {k: outputs[k] for k in ('recon', 'heatmap', 'keypoints', 'connectivity')}

  return TrainSetup(
      layout=layout,
      vgg_params=sharding.replicate(vgg_params, mesh),
      train_step=jax.jit(train_step, in_shardings=(state_shardings, data, replicated),
                         out_shardings=(state_shardings, replicated),
                         donate_argnums=(0,)),
      loss_and_grads=jax.jit(loss_and_grads, in_shardings=(state_shardings, data, replicated),
                             out_shardings=replicated),
      eval_step=inference.make_eval_step(layout),
      summary_step=jax.jit(summary_step, in_shardings=(state_shardings, data),
                           out_shardings=replicated))


def foreground_weight(loss_config, step):
  """config.loss.foreground_weight at `step`: linear decay to 0 at foreground_anneal_steps."""
  weight = loss_config.foreground_weight
  if loss_config.foreground_anneal_steps:
    fraction = step.astype(jnp.float32) / loss_config.foreground_anneal_steps
    weight = weight * jnp.maximum(0.0, 1.0 - fraction)
  return weight


def _global_norm(tree):
  leaves = jax.tree_util.tree_leaves(tree)
  return jnp.sqrt(sum(jnp.sum(jnp.square(x.astype(jnp.float32))) for x in leaves))


_NONFINITE_HINT = ('Try a lower config.optim.learning_rate or config.optim.grad_clip_norm > 0, '
                   'and resume from that checkpoint.')


def _check_finite(step: int, metrics: Dict[str, float]) -> None:
  bad = {k: v for k, v in metrics.items() if not np.isfinite(v)}
  if bad:
    raise FloatingPointError(
        f'Non-finite training metrics at step {step}: {bad}. Stopping; the last good '
        f'checkpoint is kept. {_NONFINITE_HINT}')


def _halted_at(state) -> Optional[int]:
  """The step whose loss or gradient was non-finite (train_step halted there), or None."""
  step = int(jax.device_get(state['step']))
  return -step if step < 0 else None


def _stop_nonfinite(failed: int, step: int, setup, state, data_iter, ckpt) -> None:
  """Saves the halted state (that of step failed - 1) and raises FloatingPointError."""
  last = failed - 1
  state = dict(state, step=jax.device_put(np.int32(last), setup.state_shardings['step']))
  if ckpt.latest_step() != last:
    ckpt.save(last, state, data_iter, force=True)
    ckpt.manager.wait_until_finished()
  raise FloatingPointError(
      f'Non-finite loss or gradient at step {failed} (noticed at step {step}). Stopping; '
      f'the state of step {last}, the last finite one, is saved in {ckpt.manager.directory} '
      f'(its data iterator is at step {step}). {_NONFINITE_HINT}')


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str, *,
                       random_vgg: bool = False) -> Optional[Dict[str, Any]]:
  """Trains (resuming from workdir's latest checkpoint) and evaluates at the end.

  Returns the evaluation results (see `evaluate`), or None when the run stopped
  early on SIGTERM (after saving a checkpoint at its current step) or has no
  evaluation.
  """
  config_lib.validate(config)
  # Process 0 holds the workdir's lock for the whole run: a second training is refused.
  holder = (workdir_lib.lock(workdir) if jax.process_index() == 0
            else contextlib.nullcontext())
  with holder:
    mesh = sharding.make_mesh()
    sharding.log_topology(mesh)
    setup = create_train_setup(config, mesh, random_vgg=random_vgg)
    train_source = input_pipeline.build_source(config.data, 'train')
    dataset = input_pipeline.create_train_dataset(
        config, train_source, seed=config.seed, process_index=jax.process_index(),
        process_count=jax.process_count())
    return _train_in_workdir(config, workdir, setup, train_source, iter(dataset))


def _train_in_workdir(config, workdir, setup, train_source, data_iter):
  ckpt = checkpointing.Checkpointer(
      workdir_lib.checkpoint_dir(workdir),
      every_steps=config.checkpoint_every_steps, keep=config.keep_checkpoints,
      use_async=config.checkpoint_async)
  if ckpt.latest_step() is not None:
    try:
      _, state, skipped = ckpt.restore(setup.abstract_state, data_iter, config=config)
    except BaseException:
      ckpt.close()
      raise
    if skipped:
      if jax.process_index() == 0:
        # Kept for inspection, out of the way of the steps this run saves again.
        workdir_lib.move_aside(workdir, skipped)
      if jax.process_count() > 1:
        multihost_utils.sync_global_devices('ppl_jax: unreadable checkpoints moved aside')
      ckpt.reload()
  else:
    state = setup.init()
  step = int(jax.device_get(state['step']))
  if step > config.num_train_steps:
    ckpt.close()
    raise ValueError(
        f'config.num_train_steps={config.num_train_steps} is below the step of the latest '
        f'checkpoint in {workdir} ({step}): pass --config.num_train_steps={step} or more to '
        'continue this run, or a new --workdir to start another.')
  if step:
    logging.info('Resuming at step %d of %d', step, config.num_train_steps)
  # Written once the config is known to fit the checkpoint it resumes.
  if jax.process_index() == 0:
    workdir_lib.write_config(workdir, config)

  writer = metric_writers.MetricWriter(workdir)
  watcher = checkpointing.PreemptionWatcher()
  watcher.install()
  try:
    outcome = _train_loop(config, setup, state, step, data_iter, ckpt, writer,
                          watcher)
    state = outcome.state
  finally:
    watcher.uninstall()
    ckpt.close()
  if outcome.stopped:
    writer.close()
    return None
  results = None
  if config.eval_at_end:
    results = evaluate(config, setup, state, train_source)
    writer.write_scalars(config.num_train_steps,
                         {f'eval/{k}': v for k, v in results.items()
                          if isinstance(v, float)})
    if jax.process_index() == 0:
      workdir_lib.path(workdir, 'eval.json').write_text(json.dumps(results, indent=2))
  writer.close()
  return results


@dataclasses.dataclass
class _LoopResult:
  state: Any
  stopped: bool


def _train_loop(config, setup, state, step, data_iter, ckpt, writer,
                watcher) -> _LoopResult:
  """Runs steps until num_train_steps or SIGTERM; checkpoints as configured."""
  mesh = setup.mesh
  num_steps = config.num_train_steps
  last_time, last_step = time.perf_counter(), step
  pending_metrics = None
  while step < num_steps:
    if watcher.should_stop():
      failed = _halted_at(state)
      if failed is not None:   # never save a halted state as if it were of this step
        _stop_nonfinite(failed, step, setup, state, data_iter, ckpt)
      logging.warning('%s received: saving a checkpoint at step %d and exiting (a second '
                      'Ctrl-C exits at once without saving).', watcher.received, step)
      ckpt.save(step, state, data_iter, force=True)
      return _LoopResult(state, stopped=True)
    batch = next(data_iter)
    global_batch = sharding.shard_batch(batch, mesh)
    state, pending_metrics = setup.train_step(state, global_batch, setup.vgg_params)
    step += 1
    log_now = step % config.log_every_steps == 0 or step == num_steps
    save_now = ckpt.manager.should_save(step) or step == num_steps
    if log_now or save_now:
      # Never log or checkpoint a diverged state.
      metrics = {k: float(v) for k, v in jax.device_get(pending_metrics).items()}
      failed = _halted_at(state)
      if failed is not None:
        _stop_nonfinite(failed, step, setup, state, data_iter, ckpt)
      _check_finite(step, metrics)
    if log_now:
      now = time.perf_counter()
      steps_per_s = (step - last_step) / max(now - last_time, 1e-9)
      metrics['steps_per_s'] = steps_per_s
      metrics['frames_per_s'] = steps_per_s * config.batch_size
      writer.write_scalars(step, metrics)
      eta = (num_steps - step) / max(steps_per_s, 1e-9)
      logging.info('step %d/%d  loss %.5f  image %.5f  kp_recon %.5f  commit %.5f  '
                   '%.1f frames/s  ETA %s', step, num_steps, metrics['loss'],
                   metrics['image_loss'], metrics['keypoint_recon_loss'],
                   metrics['commitment_loss'], metrics['frames_per_s'],
                   time.strftime('%H:%M:%S', time.gmtime(eta)))
      last_time, last_step = now, step
    every = config.image_summary_every_steps
    if every and (step % every == 0 or step == num_steps):
      outputs = jax.device_get(setup.summary_step(state, global_batch))
      rows = {k: np.asarray(v)[:_SUMMARY_ROWS] for k, v in batch.items()}
      writer.write_images(step, {'summary': metric_writers.pose_summary(rows, outputs)})
    ckpt.save(step, state, data_iter, force=step == num_steps)
  return _LoopResult(state, stopped=False)


def predict(config, setup: TrainSetup, state, source: base.VideoSource):
  """Keypoints on all labelled frames of `source`.

  Returns (predicted [F, N, 2], keypoints [F, G, 2], visible [F, G]), (x, y) in
  [-1, 1]; at most config.eval_max_batches batches (0 = all).
  """
  dataset = input_pipeline.create_eval_dataset(config, source,
                                               batch_size=config.eval_batch_size)
  outputs = list(inference.eval_outputs(
      setup.eval_step, setup.mesh, state,
      itertools.islice(dataset, config.eval_max_batches or None)))
  if not outputs:
    raise ValueError(f'The test split of config.data.name={config.data.name!r} has no '
                     'labelled frames to evaluate.')
  return tuple(np.concatenate([o[k] for o in outputs])
               for k in ('predicted', 'keypoints', 'visible'))


def evaluate(config, setup: TrainSetup, state,
             train_source: Optional[base.VideoSource]) -> Dict[str, Any]:
  """Min-cost-flow matched error on the test split, and a mean-pose baseline.

  Errors are mean L2 distances in units of the image side, x100 (H36M style).
  The baseline predicts the training split's mean ground-truth pose on every frame
  (G points, matched the same way).
  """
  test_source = input_pipeline.build_source(config.data, 'test')
  predicted, keypoints, visible = predict(config, setup, state, test_source)
  # [-1, 1] spans the image side twice: halve to get units of the image side.
  result = matching.matched_error(predicted / 2, keypoints / 2, visible)
  results = {
      'protocol': 'min-cost-flow matching (SPEC 4), L2 x100 in units of the image side',
      'num_frames': int(len(predicted)),
      'num_labels': result.num_labels,
      'matched_error': 100 * result.error,
      'assignment': result.assignment.tolist(),
  }
  if train_source is not None:
    mean_pose = mean_training_pose(train_source)
    baseline = matching.matched_error(
        np.broadcast_to(mean_pose, keypoints.shape) / 2, keypoints / 2, visible)
    results['mean_pose_matched_error'] = 100 * baseline.error
  if jax.process_index() == 0:
    lines = [f'Evaluation on {results["num_frames"]} held-out {config.data.name} frames '
             f'({results["protocol"]}):',
             f'  PPL (N={config.model.num_parts})  matched error '
             f'{results["matched_error"]:.3f}']
    if 'mean_pose_matched_error' in results:
      lines.append(f'  mean training pose   matched error '
                   f'{results["mean_pose_matched_error"]:.3f}')
    print('\n'.join(lines), flush=True)
  return results
