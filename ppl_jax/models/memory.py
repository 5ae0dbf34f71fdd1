"""Hierarchical memory M: m banks x k tokens x d, vector-quantised with an EMA codebook.

State lives in the Flax collection 'memory' (never in 'params'):
  codebook  [m, k, d]  the tokens g' are read from;
  ema_count [m, k]     EMA of how many batch tokens chose each memory token;
  ema_sum   [m, k, d]  EMA of the sum of the batch tokens that chose it.
One training step (VQ-VAE EMA with Laplace smoothing, van den Oord et al. 2017, App. A.1):
  n_bk   = sum_b [argmin_k' |g_bb' - e_bk'| == k]            (per bank b, token k)
  s_bk   = sum_b g_b [same condition]
  count <- decay * count + (1 - decay) * n;  sum <- decay * sum + (1 - decay) * s
  count~ = (count + eps) / (sum_k count + k * eps) * sum_k count
  codebook <- sum / count~
Optional dead-token re-seeding (`reseed_below` > 0; off in the paper's method): after the
EMA step, every token whose count is below `reseed_below` restarts at one of this batch's
tokens of its bank, the worst-quantised first (largest |g - e|^2 against the codebook they
were quantised with; the j-th dead token of a bank takes the j-th worst, cycling over the
batch), with count 1 and sum = that token, as the dead-code restarts of other VQ codebases
(e.g. Dhariwal et al. 2020, Jukebox) do.
The sums over the batch are plain jnp reductions, so under jit with a batch-sharded
input XLA inserts the cross-device all-reduce itself.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp


def straight_through(tokens, quantized):
  """Forward value `quantized`, gradient copied to `tokens` unchanged (identity Jacobian)."""
  return tokens + jax.lax.stop_gradient(quantized - tokens)


def nearest_tokens(tokens, codebook):
  """Index of the L2-nearest codebook token of each bank.

  Args:
    tokens: [B, m, d].
    codebook: [m, k, d].
  Returns:
    int32 [B, m] indices into the k tokens of each bank (ties: lowest index).
  """
  # |g - e|^2 = |g|^2 - 2 g.e + |e|^2; HIGHEST precision so that TF32/bf16 matmul passes on
  # accelerators do not flip near-ties relative to an exact float32 computation.
  cross = jnp.einsum('bmd,mkd->bmk', tokens, codebook, precision=jax.lax.Precision.HIGHEST)
  dist = (jnp.sum(tokens ** 2, axis=-1)[..., None] - 2.0 * cross
          + jnp.sum(codebook ** 2, axis=-1)[None])
  return jnp.argmin(dist, axis=-1).astype(jnp.int32)


class HierarchicalMemory(nn.Module):
  """m banks of k tokens of width d; quantises each g_i against bank i.

  Initial state: codebook ~ N(0, 1); ema_count = 1 and ema_sum = codebook, i.e. the EMA
  statistics start consistent with the codebook (each token "seen once" at its initial
  value). Starting counts at 0 with independent sums (the common PyTorch recipe) sends every
  token unused in the first step to ema_sum / eps ~ 1e5, which would wreck the mean-pooled
  prior T; with this start an unused token keeps its value and only decays towards 0.
  """
  num_banks: int
  num_tokens: int
  dim: int
  decay: float = 0.9
  eps: float = 1e-5
  reseed_below: float = 0.0

  def setup(self):
    shape = (self.num_banks, self.num_tokens, self.dim)
    self.codebook = self.variable(
        'memory', 'codebook',
        lambda: jax.random.normal(self.make_rng('params'), shape, jnp.float32))
    self.ema_count = self.variable(
        'memory', 'ema_count', lambda: jnp.ones(shape[:2], jnp.float32))
    self.ema_sum = self.variable('memory', 'ema_sum', lambda: self.codebook.value)

  def pooled(self):
    """Mean over the k tokens of each bank: [m, d] (input of the prior distillation)."""
    return jnp.mean(self.codebook.value, axis=1)

  def __call__(self, tokens, *, train):
    """Quantises G and, when training with 'memory' mutable, takes one EMA step.

    Args:
      tokens: G [B, m, d].
      train: update the codebook (only if the 'memory' collection is mutable and not at init).
    Returns:
      (quantized_st, quantized, indices): G' with the straight-through gradient [B, m, d],
      G' itself (codebook vectors read before this step's update, no gradient) [B, m, d],
      int32 indices [B, m].
    """
    tokens = tokens.astype(jnp.float32)
    if tokens.shape[1:] != (self.num_banks, self.dim):
      raise ValueError(
          f'HierarchicalMemory: tokens have shape {tokens.shape}, expected [B, {self.num_banks}, '
          f'{self.dim}] (config.model.memory_banks, config.model.memory_dim).')
    codebook = self.codebook.value
    constant_tokens = jax.lax.stop_gradient(tokens)
    indices = nearest_tokens(constant_tokens, codebook)
    quantized = jax.lax.stop_gradient(
        jnp.take_along_axis(codebook[None], indices[..., None, None], axis=2)[:, :, 0])
    if train and self.is_mutable_collection('memory') and not self.is_initializing():
      self._ema_update(constant_tokens, indices, quantized)
    return straight_through(tokens, quantized), quantized, indices

  def _ema_update(self, tokens, indices, quantized):
    onehot = jax.nn.one_hot(indices, self.num_tokens, dtype=jnp.float32)  # [B, m, k]
    counts = jnp.sum(onehot, axis=0)                                        # [m, k]
    sums = jnp.einsum('bmk,bmd->mkd', onehot, tokens, precision=jax.lax.Precision.HIGHEST)
    ema_count = self.decay * self.ema_count.value + (1.0 - self.decay) * counts
    ema_sum = self.decay * self.ema_sum.value + (1.0 - self.decay) * sums
    if self.reseed_below > 0:
      ema_count, ema_sum = self._reseed(tokens, quantized, ema_count, ema_sum)
    total = jnp.sum(ema_count, axis=1, keepdims=True)                      # [m, 1]
    smoothed = (ema_count + self.eps) / (total + self.num_tokens * self.eps) * total
    self.ema_count.value = ema_count
    self.ema_sum.value = ema_sum
    self.codebook.value = ema_sum / smoothed[..., None]

  def _reseed(self, tokens, quantized, ema_count, ema_sum):
    """Restarts the tokens with ema_count < reseed_below at the worst-quantised batch tokens."""
    dead = ema_count < self.reseed_below                                    # [m, k]
    error = jnp.sum((tokens - quantized) ** 2, axis=-1)                    # [B, m]
    worst_first = jnp.argsort(-error, axis=0).T                            # [m, B]
    rank = (jnp.cumsum(dead, axis=1) - 1) % tokens.shape[0]                # [m, k]
    source = jnp.take_along_axis(worst_first, rank, axis=1)                # [m, k]
    restart = jnp.take_along_axis(jnp.swapaxes(tokens, 0, 1), source[..., None], axis=1)
    return (jnp.where(dead, 1.0, ema_count),
            jnp.where(dead[..., None], restart, ema_sum))
