"""benchmarks/step_profile.py: HLO parsing, convolution FLOPs and the per-component summary."""

import tempfile

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import load_benchmark


@pytest.fixture(scope='module')
def profile():
  return load_benchmark('step_profile')


def _conv(x, w):
  return jax.lax.conv_general_dilated(x, w, (1, 1), 'SAME',
                                      dimension_numbers=('NHWC', 'HWIO', 'NHWC'))


def test_component_of_reads_module_path_pass_and_direction(profile):
  c = profile.component_of
  assert c('jit(train_step)/jvp(PPL)/PPL.render_and_decode/decoder/up_1/conv0/'
           'conv_general_dilated') == 'decoder fwd'
  assert c('jit(train_step)/transpose(jvp(PPL))/PPL._estimate/encoder/trunk/down_0/bn1/sub') \
      == 'encoder bwd'
  assert c('jit(train_step)/transpose(jvp(equivariance))/jvp(PPL.estimate)/PPL._estimate/'
           'encoder/trunk/conv1') == 'encoder bwd, equivariance pass'
  assert c('jit(train_step)/jvp(PPL)/PPL.render_and_decode/jit(_forward)/max') == \
      'link heatmap fwd'
  assert c('jit(train_step)/jvp(objective)/image_loss/ssim/dot_general') == 'image loss fwd'
  assert c('jit(train_step)/optimizer/add') == 'optimizer'
  assert c('jit(train_step)/halt_check/jit(_where)/select_n') == 'halt check'
  assert c('') == 'other'


def test_convolution_flops_of_forward_and_both_gradients(profile):
  b, h, w, cin, cout = 2, 8, 6, 3, 5
  x = jnp.ones((b, h, w, cin))
  k = jnp.ones((3, 3, cin, cout))
  one_conv = 2 * b * h * w * cout * 9 * cin      # closed form: MACs x 2
  loss = lambda x, k: jnp.sum(_conv(x, k) ** 2)
  for fn, convs in ((_conv, 1), (jax.grad(loss, argnums=(0, 1)), 3)):
    kernels = profile.Kernels(jax.jit(fn).lower(x, k).compile().as_text())
    total = sum(profile.conv_flops(i, kernels.instructions)
                for i in kernels.instructions.values())
    assert total == convs * one_conv


def _toy_step(x, k):
  with jax.named_scope('decoder'):
    y = _conv(x, k)
  with jax.named_scope('optimizer'):
    return jnp.tanh(y) * 2.0 + 1.0


def test_summary_of_hand_made_events_is_per_step(profile):
  x, k = jnp.ones((2, 16, 16, 8)), jnp.ones((3, 3, 8, 8))
  kernels = profile.Kernels(jax.jit(_toy_step).lower(x, k).compile().as_text())
  convs = [n for n in kernels.instructions if kernels.kind(n) == 'convolution'
           and kernels.flops(n)]
  others = [n for n, i in kernels.instructions.items() if n not in convs and i['op'] not in
            ('parameter', 'constant', 'tuple', 'bitcast', 'get-tuple-element')]
  assert convs and others
  # Three steps: every kernel 4 ms a step, plus runtime events that name no instruction.
  events = [(n, 0.004) for n in convs + others] * 3 + [('ThunkExecutor::Execute', 1.0)]
  summary = profile.summarise(kernels, events, steps=3)
  decoder = summary['components']['decoder fwd']
  assert decoder['conv_s'] == pytest.approx(0.004 * len(convs))
  assert decoder['conv_flops'] == 2 * 2 * 16 * 16 * 8 * 9 * 8
  assert summary['kernel_sum_s'] == pytest.approx(0.004 * (len(convs) + len(others)))
  assert summary['kinds']['convolution']['s'] == pytest.approx(0.004 * len(convs))
  assert sum(c['s'] for c in summary['components'].values()) == \
      pytest.approx(summary['kernel_sum_s'])
  with pytest.raises(ValueError, match='No trace event'):
    profile.summarise(kernels, [('ThunkExecutor::Execute', 1.0)], steps=1)


def test_operation_names_drop_layer_numbers(profile):
  assert profile.operation_of('jit(s)/jvp(PPL)/decoder/up_1/conv0/conv_general_dilated') == \
      'convN/conv_general_dilated'
  assert profile.operation_of('jit(s)/encoder/trunk/down_3/bn_proj/reduce_sum') == \
      'bn_proj/reduce_sum'
  assert profile.operation_of('jit(s)/mix_enc/block_1;jit(s)/x') == 'mix_enc/block_N'
  assert profile.operation_of('') == '(no metadata)'


def test_profiled_toy_step_is_attributed_to_its_named_scopes(profile):
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=(8, 64, 64, 32)), jnp.float32)
  k = jnp.asarray(rng.normal(size=(3, 3, 32, 32)), jnp.float32)
  compiled = jax.jit(_toy_step).lower(x, k).compile()
  kernels = profile.Kernels(compiled.as_text())
  jax.block_until_ready(compiled(x, k))
  with tempfile.TemporaryDirectory() as trace_dir:
    jax.profiler.start_trace(trace_dir, create_perfetto_trace=True)
    for _ in range(2):
      jax.block_until_ready(compiled(x, k))
    jax.profiler.stop_trace()
    events = profile.trace_events(trace_dir)
  summary = profile.summarise(kernels, events, steps=2)
  decoder = summary['components']['decoder fwd']
  assert decoder['conv_flops'] == 2 * 8 * 64 * 64 * 32 * 9 * 32
  assert decoder['conv_s'] > 0 and decoder['s'] >= decoder['conv_s']
  assert set(summary['components']) <= {'decoder fwd', 'optimizer', 'other'}
