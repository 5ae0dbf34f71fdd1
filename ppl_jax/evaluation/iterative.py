"""Iterative inference on (occluded) frames (paper sec. 3.4, Fig. 4; SPEC 3).

Iteration 0 takes the (possibly occluded) frame I as input; every iteration
  T'        = estimate(input)                 keypoints of this iteration
  T'_recon  = recall(T')                      through the hierarchical memory
  I_recon   = decode(I, render(T'_recon))     reference = the original frame I
and I_recon is the next iteration's input. The keypoints of every iteration are returned
(the paper reports all of them, Figs. 6-7, with 4 iterations). A model trained with the
release's 'masked_self' context only ever saw block-masked references, so its reference is
the original frame I under a fixed block mask (`reference_keep`, the same every iteration).

`next_input` picks the next iteration's input: 'recon' (the paper's) feeds I_recon whole;
'composite' (ours, a named variant) feeds I where the frame is visible and I_recon only
where it is occluded, so the loop fills in the occluder instead of re-estimating from a
reconstruction of the whole frame (which loses the background's texture and the figure's
colours, and drifts away from the single pass even on clean frames).

`occlusion_sweep` runs it over an evaluation split under several maskings and
gives the error per iteration with a fixed keypoint -> joint assignment (from the
min-cost-flow matching on unoccluded frames), as in Figs. 6-7.
"""

from typing import Callable, Dict, Iterable, Mapping, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from ppl_jax.evaluation.regression import ProtocolResult

FIXED_MATCHING_PROTOCOL = 'matched_l2_fixed_assignment'


NEXT_INPUTS = ('recon', 'composite')


def make_iterative_inference(model, *, num_iterations: int = 4, recall: bool = True,
                             next_input: str = 'recon') -> Callable:
  """Jitted fn(variables, image, reference_keep=None, occluded=None) -> dict of
  per-iteration outputs (eval mode). recall=False replaces the memory's recall by the
  identity (T'_recon = T'), a diagnostic that separates what the memory does from what the
  loop does; next_input is one of NEXT_INPUTS (module docstring).

  image: [B, H, W, 3] in [-1, 1]; reference_keep: None or [B, H, W] (1 keep, 0 zero),
  applied to the reference I (masked_self models); occluded: bool [B, H, W], True where the
  frame is occluded (read by next_input='composite' only, which needs it).
  Returns, stacked over iterations first:
  'keypoints' T' [iters, B, N, 2], 'keypoints_recon' T'_recon [iters, B, N, 2],
  'recon' I_recon [iters, B, H, W, 3], 'heatmap' S [iters, B, H, W] and 'next_input'
  [iters, B, H, W, 3], iteration t + 1's input (= recon with next_input='recon').
  """
  if num_iterations < 1:
    raise ValueError(f'num_iterations must be >= 1, got {num_iterations}.')
  if next_input not in NEXT_INPUTS:
    raise ValueError(f'next_input={next_input!r} is not one of {NEXT_INPUTS}.')

  def run(variables, image, reference_keep=None, occluded=None):
    reference = image if reference_keep is None else image * reference_keep[..., None]
    if next_input == 'composite' and occluded is None:
      raise ValueError("next_input='composite' needs the occluded pixels (occluded [B, H, W]).")

    def iteration(current, _):
      keypoints, _ = model.apply(variables, current, train=False, method=model.estimate)
      keypoints_recon = (model.apply(variables, keypoints, method=model.recall) if recall
                         else keypoints)
      recon, heatmap = model.apply(variables, reference, keypoints_recon, train=False,
                                   method=model.render_and_decode)
      following = (jnp.where(occluded[..., None], recon, image)
                   if next_input == 'composite' else recon).astype(current.dtype)
      outputs = {'keypoints': keypoints, 'keypoints_recon': keypoints_recon,
                 'recon': recon, 'heatmap': heatmap, 'next_input': following}
      return following, outputs

    # scan compiles the iteration body once, whatever num_iterations is.
    _, outputs = jax.lax.scan(iteration, image, None, length=num_iterations)
    return outputs

  return jax.jit(run)


def fixed_assignment_errors(keypoints: np.ndarray, ground_truth: np.ndarray,
                            visible: np.ndarray, assignment: np.ndarray) -> np.ndarray:
  """Summed L2 per iteration [iters] over labelled (frame, joint) pairs.

  keypoints: [iters, F, N, 2]; ground_truth: [F, G, 2] (same units); visible: bool [F, G];
  assignment: int [G], the detected keypoint serving each joint
  (`matching.matched_error(...).assignment`).
  """
  keypoints = np.asarray(keypoints, np.float64)
  ground_truth = np.asarray(ground_truth, np.float64)
  visible = np.asarray(visible, bool)
  assignment = np.asarray(assignment)
  if (keypoints.ndim != 4 or keypoints.shape[1] != ground_truth.shape[0]
      or assignment.shape != (ground_truth.shape[1],)
      or visible.shape != ground_truth.shape[:2]):
    raise ValueError(
        'fixed_assignment_errors needs keypoints [iters, F, N, 2], ground_truth [F, G, 2], '
        f'visible [F, G], assignment [G]; got {keypoints.shape}, {ground_truth.shape}, '
        f'{visible.shape}, {assignment.shape}.')
  distance = np.linalg.norm(keypoints[:, :, assignment] - ground_truth[None], axis=-1)
  return np.where(visible[None], distance, 0.0).sum(axis=(1, 2))


def occlusion_sweep(infer: Callable, variables, batches: Iterable[Mapping[str, np.ndarray]],
                    maskings: Sequence[Callable], *, assignment: np.ndarray,
                    reference_keep: Optional[Callable[[int, int], np.ndarray]] = None
                    ) -> Dict[str, ProtocolResult]:
  """Error per iteration under each masking, one pass over the evaluation batches.

  infer: `make_iterative_inference(model)`; batches: dicts with 'image' [B, H, W, 3],
  'keypoints' [B, G, 2] in [-1, 1], 'visible' [B, G] and optionally 'valid' [B]
  (padding), as `input_pipeline.create_eval_dataset` yields; maskings: objects with a
  `name` called as masking(images, batch_index) and with `occluded(images, batch_index)`
  (`occlusion.RandomMasking`, `CenterMasking`); assignment: int [G] from the matching on unoccluded frames;
  reference_keep: None, or fn(batch_index, batch_size) -> [B, H, W] for `infer`.
  Returns {masking.name: result} with value = error of the last iteration and
  details['per_iteration'] [iters], all in units of the image size x 100.
  """
  totals = {masking.name: 0.0 for masking in maskings}
  num_labels = 0
  for batch_index, batch in enumerate(batches):
    valid = np.asarray(batch.get('valid', np.ones(len(batch['image']), bool)), bool)
    visible = np.asarray(batch['visible'], bool) & valid[:, None]
    num_labels += int(visible.sum())
    keep = None if reference_keep is None else reference_keep(batch_index, len(valid))
    for masking in maskings:
      images = masking(np.asarray(batch['image']), batch_index)
      occluded = jnp.asarray(masking.occluded(images, batch_index))
      keypoints = np.asarray(infer(variables, jnp.asarray(images), keep,
                                   occluded)['keypoints'])
      totals[masking.name] = totals[masking.name] + fixed_assignment_errors(
          keypoints, batch['keypoints'], visible, assignment)
  if num_labels == 0:
    raise ValueError('occlusion_sweep: the batches hold no labelled joint.')
  results = {}
  for name, total in totals.items():
    # Coordinates span 2 units in [-1, 1]: x 100 / 2 gives percent of the image size.
    per_iteration = total / num_labels * 50.0
    results[name] = ProtocolResult(FIXED_MATCHING_PROTOCOL, float(per_iteration[-1]),
                                   'L2 / image size x 100',
                                   {'per_iteration': per_iteration, 'masking': name,
                                    'num_labels': num_labels})
  return results
