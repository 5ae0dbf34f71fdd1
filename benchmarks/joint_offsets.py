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
of another joint, is a joint no keypoint found.
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


def joint_offsets(predicted, truth, video, side):
  """predicted [F, N, 2], truth [F, J, 2] in [-1, 1], video [F]; side in pixels.

  Returns one dict per joint (keypoint, offset_xy, bias, scatter, scatter_in_video, within),
  lengths in pixels.
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
    rows.append({'keypoint': k, 'offset_xy': mean.tolist(),
                 'bias': float(np.linalg.norm(mean)),
                 'scatter': float(np.linalg.norm(offset - mean, axis=-1).mean()),
                 'scatter_in_video': float(np.linalg.norm(in_video, axis=-1).mean()),
                 'within': float((distance[:, k, j] < RADIUS * side).mean())})
  return rows


def _define_flags():
  # Defined only when run as a script, so that tests import `joint_offsets` alone.
  flags.DEFINE_list('workdirs', [], 'Trained workdirs.')
  flags.DEFINE_string('json', '', 'Output JSON (default: none).')


def main(argv):
  del argv
  from ppl_jax import inference, workdir as workdir_lib  # pylint: disable=g-import-not-at-top
  from ppl_jax.data import synthetic  # pylint: disable=g-import-not-at-top
  code = provenance.current_for_results('these offsets')
  runs = []
  for workdir in FLAGS.workdirs:
    config = workdir_lib.load_config(workdir)
    test = inference.predict_split(inference.restore(config, workdir), 'test')
    side = config.data.image_size
    names = ({'humanoid': synthetic.HUMANOID_JOINTS,
              'quadruped': synthetic.QUADRUPED_JOINTS}[config.data.synthetic.kind] if config.data.name == 'synthetic'
             else [str(j) for j in range(test.keypoints.shape[1])])
    rows = joint_offsets(test.predicted, test.keypoints, test.video, side)
    print(f'\n{workdir} (side {side} px, coverage radius {RADIUS * side:.2f} px)')
    print(f'{"joint":<20} {"kp":>3} {"offset x, y":>13} {"bias":>5} {"scatter":>7} '
          f'{"in video":>8} {"within":>6}')
    for name, r in zip(names, rows):
      print(f'{name:<20} {r["keypoint"]:>3} {r["offset_xy"][0]:+6.2f},{r["offset_xy"][1]:+6.2f} '
            f'{r["bias"]:5.2f} {r["scatter"]:7.2f} {r["scatter_in_video"]:8.2f} '
            f'{r["within"]:6.2f}')
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
