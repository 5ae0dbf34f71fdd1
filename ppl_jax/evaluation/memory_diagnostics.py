"""How well the memory recalls poses: T'_recon = recall(T') on clean frames, codebook use.

`recall_and_indices` runs the memory on estimated keypoints; `codebook_usage` summarises
which tokens each bank quantises them to: the fraction of a bank's k tokens used at least
once and the perplexity exp(H) of their frequencies (k when all are used equally, 1 when
one token takes everything).
"""

from typing import Dict

import jax
import numpy as np


def recall_and_indices(model, variables, keypoints: np.ndarray, *, batch_size: int = 64):
  """(T'_recon [F, N, 2], token indices int [F, m]) of keypoints T' [F, N, 2]."""
  recall = jax.jit(lambda v, k: (model.apply(v, k, method=model.recall),
                                 model.apply(v, k, method=model.memory_indices)))
  recalled, indices = [], []
  for start in range(0, len(keypoints), batch_size):
    chunk = np.asarray(keypoints[start:start + batch_size], np.float32)
    pad = batch_size - len(chunk)   # a fixed batch shape compiles once
    padded = np.concatenate([chunk, np.zeros((pad,) + chunk.shape[1:], np.float32)])
    r, i = jax.device_get(recall(variables, padded))
    recalled.append(np.asarray(r)[:len(chunk)])
    indices.append(np.asarray(i)[:len(chunk)])
  return np.concatenate(recalled), np.concatenate(indices)


def codebook_usage(indices: np.ndarray, num_tokens: int) -> Dict[str, np.ndarray]:
  """indices int [F, m] -> 'used_fraction' [m], 'perplexity' [m] (see module docstring)."""
  indices = np.asarray(indices)
  counts = np.stack([np.bincount(indices[:, bank], minlength=num_tokens)
                     for bank in range(indices.shape[1])]).astype(np.float64)
  p = counts / counts.sum(axis=1, keepdims=True)
  entropy = -np.sum(np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0), axis=1)
  return {'used_fraction': (counts > 0).mean(axis=1), 'perplexity': np.exp(entropy)}
