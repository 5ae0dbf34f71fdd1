"""Custom JAX ops for PPL."""

from ppl_jax.ops.grid import pixel_grid
from ppl_jax.ops.link_heatmap import link_heatmap
from ppl_jax.ops.warp import random_similarity, warp_images, warp_points

__all__ = ['link_heatmap', 'pixel_grid', 'random_similarity', 'warp_images', 'warp_points']
