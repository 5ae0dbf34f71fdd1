"""Custom JAX ops for PPL."""

from ppl_jax.ops.grid import pixel_grid
from ppl_jax.ops.link_heatmap import link_heatmap

__all__ = ['link_heatmap', 'pixel_grid']
