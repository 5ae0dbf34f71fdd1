"""The package's import graph (every import statement, lazy ones inside functions too)
has no cycle: no two modules of ppl_jax/ import each other, directly or through others."""

import ast
import pathlib

import pytest
from scipy.sparse import csgraph
from scipy.sparse import csr_matrix

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / 'ppl_jax'


def _module_name(path: pathlib.Path) -> str:
  parts = path.relative_to(PACKAGE.parent).with_suffix('').parts
  return '.'.join(parts[:-1] if parts[-1] == '__init__' else parts)


def import_graph() -> dict:
  """{module: set of ppl_jax modules it imports}, from the source files' ASTs."""
  modules = {_module_name(p): p for p in PACKAGE.rglob('*.py')}
  graph = {}
  for name, path in modules.items():
    targets = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
      if isinstance(node, ast.Import):
        targets.update(alias.name for alias in node.names)
      elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
        # `from a.b import c` imports a.b, and a.b.c when c is a module.
        targets.add(node.module)
        targets.update(f'{node.module}.{alias.name}' for alias in node.names)
    graph[name] = {t for t in targets if t in modules and t != name}
  return graph


def cycles(graph: dict) -> list:
  """The strongly connected components with more than one module."""
  names = sorted(graph)
  index = {n: i for i, n in enumerate(names)}
  rows = [index[a] for a in names for b in graph[a]]
  cols = [index[b] for a in names for b in graph[a]]
  adjacency = csr_matrix(([1] * len(rows), (rows, cols)), shape=(len(names),) * 2)
  count, labels = csgraph.connected_components(adjacency, directed=True, connection='strong')
  groups = [[n for n in names if labels[index[n]] == c] for c in range(count)]
  return [g for g in groups if len(g) > 1]


def test_cycle_finder_on_a_hand_made_graph():
  graph = {'a': {'b'}, 'b': {'c'}, 'c': {'a'}, 'd': {'a'}, 'e': set()}
  assert cycles(graph) == [['a', 'b', 'c']]
  assert cycles({'a': {'b'}, 'b': set()}) == []


def test_graph_sees_lazy_imports():
  graph = import_graph()
  # input_pipeline.build_source imports the prepared-data reader inside the function.
  assert 'ppl_jax.data.tfds_builders' in graph['ppl_jax.input_pipeline']


def test_package_has_no_import_cycle():
  found = cycles(import_graph())
  assert not found, f'import cycles in ppl_jax: {found}'


def reachable(graph: dict, start: str) -> set:
  """Every module `start` imports, directly or through others."""
  names = sorted(graph)
  index = {n: i for i, n in enumerate(names)}
  rows = [index[a] for a in names for b in graph[a]]
  cols = [index[b] for a in names for b in graph[a]]
  adjacency = csr_matrix(([1] * len(rows), (rows, cols)), shape=(len(names),) * 2)
  order = csgraph.breadth_first_order(adjacency, index[start], directed=True,
                                      return_predecessors=False)
  return {names[i] for i in order} - {start}


def test_reachable_on_a_hand_made_graph():
  assert reachable({'a': {'b'}, 'b': {'c'}, 'c': set(), 'd': {'a'}}, 'a') == {'b', 'c'}


@pytest.mark.parametrize('module', ['ppl_jax.predict', 'ppl_jax.evaluate', 'ppl_jax.inference'])
def test_inference_side_does_not_import_training(module):
  # Restoring and predicting need the model and the state layout, not the training loop or
  # its losses.
  found = reachable(import_graph(), module) & {'ppl_jax.train', 'ppl_jax.losses'}
  assert not found, f'{module} imports {found}'
