"""Custom JAX ops for PPL."""

from ppl_jax.ops.grid import pixel_grid
from ppl_jax.ops.link_heatmap import link_heatmap
from ppl_jax.ops.upsample import upsample2x
from ppl_jax.ops.warp import invert_some, random_similarity, warp_images, warp_points

__all__ = ['invert_some', 'link_heatmap', 'pixel_grid', 'random_similarity', 'upsample2x',
           'warp_images', 'warp_points']
