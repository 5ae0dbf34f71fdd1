"""benchmarks/step_program.py: what the normalised program text keeps and drops."""

import jax
import jax.numpy as jnp
import pytest

from conftest import load_benchmark


@pytest.fixture(scope='module')
def program():
  return load_benchmark('step_program')


def test_normalise_drops_metadata_name_and_location_tables(program):
  text = ('HloModule jit_step, entry_computation_layout={(f32[2]{0})->f32[2]{0}}\n'
          '\n'
          'FileNames\n'
          '1 "/a/ppl_jax/train.py"\n'
          'FunctionNames\n'
          '1 "loss_fn"\n'
          'FileLocations\n'
          '1 {file_name_id=1 function_name_id=1 line=141 end_line=141 column=30 end_column=70}\n'
          'ENTRY %main (x: f32[2]) -> f32[2] {\n'
          '  %x = f32[2]{0} parameter(0), metadata={op_name="x"}\n'
          '  ROOT %m = f32[2]{0} multiply(%x, %x), metadata={op_name="jit(step)/mul" '
          'source_file="/a/ppl_jax/train.py" source_line=141}\n'
          '}\n')
  want = ('\n'
          'FileNames\n'
          'FunctionNames\n'
          'FileLocations\n'
          'ENTRY %main (x: f32[2]) -> f32[2] {\n'
          '  %x = f32[2]{0} parameter(0)\n'
          '  ROOT %m = f32[2]{0} multiply(%x, %x)\n'
          '}\n')
  assert program.normalise(text) == want


def _compiled_text(fn):
  return jax.jit(fn).lower(jnp.ones((4, 3), jnp.float32)).compile().as_text()


def _plain(x):
  return jnp.tanh(x * 2.0 + 1.0).sum(axis=0)


def _scoped(x):   # the same computation under a named scope, from other source lines

  with jax.named_scope('a_scope'):
    y = x * 2.0 + 1.0
  return jnp.tanh(y).sum(axis=0)


def _other(x):
  return jnp.tanh(x * 3.0 + 1.0).sum(axis=0)


def test_compiled_programs_equal_up_to_scopes_and_lines_and_differ_by_a_constant(program):
  plain, scoped, other = (program.normalise(_compiled_text(f)) for f in (_plain, _scoped, _other))
  assert _compiled_text(_plain) != _compiled_text(_scoped)   # the raw texts differ
  assert plain == scoped
  assert plain != other
  assert program.first_differences(other, plain)
