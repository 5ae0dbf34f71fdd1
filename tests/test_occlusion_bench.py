"""benchmarks/occlusion.py: per-seed numbers and the issue's checks on hand-made reports."""

import pytest

from conftest import load_benchmark


@pytest.fixture(scope='module')
def bench():
  return load_benchmark('occlusion')


def _curves(clean, random, center):
  return {name: {'details': {'per_iteration': curve}}
          for name, curve in (('random_0', clean), ('random_0.3', random),
                              ('center_8', center))}


def _report(single, paper, composite, composite_identity=None):
  results = {
      'matched_error': {'value': single},
      'occlusion': _curves(*paper), 'occlusion_composite': _curves(*composite),
      'memory_recall': {'value': 3.0, 'details': {'mean_used_fraction': 0.5,
                                                  'mean_perplexity': 4.0,
                                                  'tokens_per_bank': 8}}}
  if composite_identity:
    results['occlusion_composite_identity_recall'] = _curves(*composite_identity)
  return {'results': results}


# Seed A: single pass 4; seed B: 5. Paper loop: drifts 10% / 2%, RandomMasking changes
# -15% / -10%, CenterMasking +10% / -10%, last RandomMasking over single 8.5/4, 9/5.
SEED_A = _report(4.0, ([4.0, 4.1, 4.2, 4.4], [10, 9, 8, 8.5], [5, 5, 5, 5.5]),
                 ([4, 4, 4, 4], [10, 6, 5, 4.4], [5, 4.5, 4.2, 4.0]))
SEED_B = _report(5.0, ([5, 5, 5, 5.1], [10, 9, 8, 9], [6, 5.7, 5.5, 5.4]),
                 ([5, 5, 5, 5.1], [10, 7, 6, 5.5], [6, 5, 5, 4.8]))


def test_row_changes_in_percent(bench):
  a = bench.row(SEED_A)
  assert a['paper_clean_drift'] == pytest.approx(10.0)
  assert a['paper_random_0.3_change'] == pytest.approx(-15.0)
  assert a['paper_center_8_change'] == pytest.approx(10.0)
  assert a['paper_random_over_clean'] == pytest.approx(2.125)
  assert a['composite_random_0.3_change'] == pytest.approx(-56.0)
  assert a['composite_center_8_change'] == pytest.approx(-20.0)
  assert (a['memory_recall'], a['used_fraction'], a['perplexity']) == (3.0, 0.5, 4.0)


def test_checks_over_seeds(bench):
  rows = [bench.row(SEED_A), bench.row(SEED_B)]
  paper = bench.checks(rows, 'paper')
  assert paper['random_0.3: worst change (%) < 0'] == (pytest.approx(-10.0), True)
  assert paper['random_0.3: median change (%) <= -10'] == (pytest.approx(-12.5), True)
  assert paper['center_8: worst change (%) < 0'] == (pytest.approx(10.0), False)
  assert paper['center_8: median change (%) <= -10'] == (pytest.approx(0.0), False)
  assert paper['clean: worst |drift| (%) <= 3'] == (pytest.approx(10.0), False)
  assert paper['random_0.3 last / clean single pass, median <= 1.15'] == (
      pytest.approx((2.125 + 1.8) / 2), False)
  composite = bench.checks(rows, 'composite')
  assert all(passed for _, passed in composite.values()), composite
  assert composite['random_0.3 last / clean single pass, median <= 1.15'][0] == (
      pytest.approx(1.1))


def test_composite_identity_loop_when_the_report_has_it(bench):
  with_identity = _report(4.0, ([4, 4, 4, 4], [10, 9, 8, 8], [5, 5, 5, 5]),
                          ([4, 4, 4, 4], [10, 6, 5, 4.4], [5, 4.5, 4.2, 4.0]),
                          ([4, 4, 4, 4.2], [10, 7, 6, 5.0], [5, 5, 5, 5.5]))
  a = bench.row(with_identity)
  assert a['composite_identity_clean_drift'] == pytest.approx(5.0)
  assert a['composite_identity_random_0.3_change'] == pytest.approx(-50.0)
  assert a['composite_identity_center_8_change'] == pytest.approx(10.0)
  assert a['composite_identity_random_over_clean'] == pytest.approx(1.25)
  checks = bench.checks([a], 'composite_identity')
  assert checks['center_8: worst change (%) < 0'] == (pytest.approx(10.0), False)
  assert checks['clean: worst |drift| (%) <= 3'] == (pytest.approx(5.0), False)
  # A report without it (older code) gives the two loops only.
  assert not any(k.startswith('composite_identity') for k in bench.row(SEED_A))
  assert bench._loops([a, bench.row(SEED_A)]) == ['paper', 'composite']
  assert bench._loops([a]) == ['paper', 'composite', 'composite_identity']
