"""PPL model: encoder, decoder, memory, mixers, priors and the composed module."""

from ppl_jax.models.memory import HierarchicalMemory
from ppl_jax.models.mixer import MixerBlock, MixerDecoder, MixerEncoder
from ppl_jax.models.ppl import PPL, build_model
from ppl_jax.models.priors import Connectivity, KeypointPrior, connectivity_weights, template

__all__ = [
    'Connectivity', 'HierarchicalMemory', 'KeypointPrior', 'MixerBlock', 'MixerDecoder',
    'MixerEncoder', 'PPL', 'build_model', 'connectivity_weights', 'template',
]
