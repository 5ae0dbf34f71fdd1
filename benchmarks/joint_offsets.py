r"""Where each joint's nearest keypoint sits: a constant offset, or scatter?

  python benchmarks/joint_offsets.py --workdirs=workdir/discovery/synthetic/seed0,... \
      --json=benchmarks/results/discovery/joint_offsets.json

For every run and ground-truth joint j of the test split, the keypoint k whose median distance
to j over the labelled frames is smallest, and in pixels: its mean offset from j (x, y; y down)
and the offset's norm (`bias`), the mean distance of the offsets from that mean (`scatter`),
the same with each video's own mean removed (`scatter_in_video`), and the fraction of frames
within part coverage's radius (3% of the side). A joint that coverage misses with a large bias
and a small scatter has a keypoint that follows it rigidly at another point of the figure (a
definition mismatch, which the regression protocol absorbs); a large scatter, or the keypoint
of another joint, is a joint no keypoint found. The scatter is also split into its RMS along
and across the limb from the joint to its first skeleton neighbour (`along`, `across`): a
middle joint of a nearly straight chain (a knee of a straight leg) is where only the bend
defines it. Per run the script also prints the keypoint heatmaps' sharpness (effective cells,
exp(entropy) of the softmax, of the feature map's h x w) and the slope of each joint's
keypoint error on the joint's position within a heatmap cell (-1 if keypoints snapped to cell
centres, 0 if they resolve positions within a cell).
"""

import json
import os
import sys

from absl import app
from absl import flags
import numpy as np

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _REPO not in sys.path:
  sys.path.insert(0, _REPO)

from ppl_jax import provenance  # pylint: disable=g-import-not-at-top,wrong-import-position

FLAGS = flags.FLAGS
RADIUS = 0.03   # of the image side, as in `evaluation.discovery.part_coverage`


def joint_offsets(predicted, truth, video, side, skeleton=None):
  """predicted [F, N, 2], truth [F, J, 2] in [-1, 1], video [F]; side in pixels;
  skeleton: joint pairs, or None.

  Returns one dict per joint (keypoint, offset_xy, bias, scatter, scatter_in_video, within,
  and with a skeleton `along` / `across`), lengths in pixels.
  """
  predicted = np.asarray(predicted, np.float64) * side / 2
  truth = np.asarray(truth, np.float64) * side / 2
  distance = np.linalg.norm(predicted[:, :, None] - truth[:, None], axis=-1)   # [F, N, J]
  rows = []
  for j in range(truth.shape[1]):
    k = int(np.argmin(np.median(distance[:, :, j], axis=0)))
    offset = predicted[:, k] - truth[:, j]
    mean = offset.mean(axis=0)
    in_video = np.concatenate([offset[video == v] - offset[video == v].mean(axis=0)
                               for v in np.unique(video)])
    split = {}
    neighbours = [b if a == j else a for a, b in (skeleton or ()) if j in (a, b)]
    if neighbours:
      limb = truth[:, neighbours[0]] - truth[:, j]
      unit = limb / np.maximum(np.linalg.norm(limb, axis=-1, keepdims=True), 1e-9)
      along = ((offset - mean) * unit).sum(-1)
      across = (offset - mean)[:, 1] * unit[:, 0] - (offset - mean)[:, 0] * unit[:, 1]
      split = {'along': float(np.sqrt((along ** 2).mean())),
               'across': float(np.sqrt((across ** 2).mean()))}
    rows.append({**split, 'keypoint': k, 'offset_xy': mean.tolist(),
                 'bias': float(np.linalg.norm(mean)),
                 'scatter': float(np.linalg.norm(offset - mean, axis=-1).mean()),
                 'scatter_in_video': float(np.linalg.norm(in_video, axis=-1).mean()),
                 'within': float((distance[:, k, j] < RADIUS * side).mean())})
  return rows


def heatmap_precision(logits, predicted, truth, keypoint_of_joint, side):
  """logits [F, h, w, N] (the encoder's heatmap logits), predicted [F, N, 2], truth [F, J, 2]
  in [-1, 1]; keypoint_of_joint [J]; side in pixels.

  Returns per joint: `cells`, the median over frames of exp(entropy) of its keypoint's softmax
  heatmap, and `cell_slope` (x, y), the least-squares slope of the keypoint's error (mean
  removed) on the joint's position within its heatmap cell (both in pixels).
  """
  logits = np.asarray(logits, np.float64)
  frames, h, w, n = logits.shape
  flat = logits.reshape(frames, h * w, n)
  weights = np.exp(flat - flat.max(axis=1, keepdims=True))
  weights /= weights.sum(axis=1, keepdims=True)
  cells = np.exp(-(weights * np.log(np.maximum(weights, 1e-300))).sum(axis=1))   # [F, N]
  predicted = np.asarray(predicted, np.float64) * side / 2
  truth = np.asarray(truth, np.float64) * side / 2
  cell = np.array([side / w, side / h])
  rows = []
  for j, k in enumerate(keypoint_of_joint):
    error = predicted[:, k] - truth[:, j]
    error -= error.mean(axis=0)
    within_cell = (truth[:, j] + side / 2) % cell
    within_cell -= within_cell.mean(axis=0)
    slope = (within_cell * error).sum(axis=0) / np.maximum((within_cell ** 2).sum(axis=0), 1e-12)
    rows.append({'cells': float(np.median(cells[:, k])), 'cell_slope': slope.tolist()})
  return rows


def _heatmap_logits(restored, source):
  """(logits [F, h, w, N], keypoints [F, N, 2]) of the encoder on the labelled frames."""
  import jax  # pylint: disable=g-import-not-at-top
  from ppl_jax import inference  # pylint: disable=g-import-not-at-top
  model = restored.model
  estimate = jax.jit(lambda variables, image: model.apply(
      variables, image, train=False, method=model.estimate, capture_intermediates=True))
  logits, keypoints = [], []
  for batch in inference.eval_batches(restored.config, source):
    valid = np.asarray(batch['valid'], bool)
    (points, _), state = estimate(restored.variables, batch['image'])
    logits.append(np.asarray(state['intermediates']['encoder']['heatmap']['__call__'][0])[valid])
    keypoints.append(np.asarray(points)[valid])
  return np.concatenate(logits), np.concatenate(keypoints)


def _define_flags():
  # Defined only when run as a script, so that tests import `joint_offsets` alone.
  flags.DEFINE_list('workdirs', [], 'Trained workdirs.')
  flags.DEFINE_string('json', '', 'Output JSON (default: none).')


def main(argv):
  del argv
  from ppl_jax import inference, input_pipeline, workdir as workdir_lib  # pylint: disable=g-import-not-at-top
  from ppl_jax.data import synthetic  # pylint: disable=g-import-not-at-top
  code = provenance.current_for_results('these offsets')
  runs = []
  for workdir in FLAGS.workdirs:
    config = workdir_lib.load_config(workdir)
    restored = inference.restore(config, workdir)
    source = input_pipeline.build_source(config.data, 'test')
    test = inference.predict_split(restored, 'test', source=source)
    skeleton = source.skeleton
    side = config.data.image_size
    names = ({'humanoid': synthetic.HUMANOID_JOINTS,
              'quadruped': synthetic.QUADRUPED_JOINTS}[config.data.synthetic.kind] if config.data.name == 'synthetic'
             else [str(j) for j in range(test.keypoints.shape[1])])
    rows = joint_offsets(test.predicted, test.keypoints, test.video, side, skeleton)
    logits, keypoints = _heatmap_logits(restored, source)
    np.testing.assert_allclose(keypoints, test.predicted, atol=1e-4)   # the same frames
    for row, extra in zip(rows, heatmap_precision(logits, keypoints, test.keypoints,
                                                  [r['keypoint'] for r in rows], side)):
      row.update(extra)
    print(f'\n{workdir} (side {side} px, coverage radius {RADIUS * side:.2f} px, heatmaps '
          f'{logits.shape[1]} x {logits.shape[2]})')
    print(f'{"joint":<20} {"kp":>3} {"offset x, y":>13} {"bias":>5} {"scatter":>7} '
          f'{"in video":>8} {"along":>5} {"across":>6} {"within":>6} {"cells":>6} '
          f'{"cell slope":>11}')
    for name, r in zip(names, rows):
      print(f'{name:<20} {r["keypoint"]:>3} {r["offset_xy"][0]:+6.2f},{r["offset_xy"][1]:+6.2f} '
            f'{r["bias"]:5.2f} {r["scatter"]:7.2f} {r["scatter_in_video"]:8.2f} '
            f'{r.get("along", np.nan):5.2f} {r.get("across", np.nan):6.2f} {r["within"]:6.2f} '
            f'{r["cells"]:6.1f} {r["cell_slope"][0]:+5.2f},{r["cell_slope"][1]:+5.2f}')
    runs.append({'workdir': workdir, 'side': side, 'joints': list(names), 'rows': rows,
                 'training_provenance': workdir_lib.read_provenance(workdir)})
  if FLAGS.json:
    os.makedirs(os.path.dirname(os.path.abspath(FLAGS.json)), exist_ok=True)
    with open(FLAGS.json, 'w') as f:
      json.dump({'provenance': code, 'runs': runs}, f, indent=2)
    print(f'Wrote {FLAGS.json}')


if __name__ == '__main__':
  _define_flags()
  app.run(main)
