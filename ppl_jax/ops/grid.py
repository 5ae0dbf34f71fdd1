"""The pixel-centre grid every coordinate in ppl_jax uses."""

import jax.numpy as jnp


def pixel_grid(h: int, w: int) -> jnp.ndarray:
  """(x, y) of the h x w pixel centres on the [-1, 1] half-pixel grid, row-major [h * w, 2]."""
  ys = (2.0 * jnp.arange(h) + 1.0) / h - 1.0
  xs = (2.0 * jnp.arange(w) + 1.0) / w - 1.0
  grid_y, grid_x = jnp.meshgrid(ys, xs, indexing='ij')
  return jnp.stack([grid_x, grid_y], axis=-1).reshape(h * w, 2)
