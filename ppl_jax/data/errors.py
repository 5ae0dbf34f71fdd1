"""The error type of the dataset readers and their `on_bad` policy."""

from typing import List

from absl import logging

ON_BAD_CHOICES = ('error', 'warn')


class DataError(ValueError):
  """Bad input data. The message names the file, says what is wrong and how to fix it."""


def check_on_bad(on_bad: str) -> None:
  if on_bad not in ON_BAD_CHOICES:
    raise ValueError(f'on_bad must be one of {ON_BAD_CHOICES}, got {on_bad!r}.')


def handle_bad(on_bad: str, error: DataError, skipped: List[str]) -> None:
  """Raises `error` (on_bad='error') or logs it and records it in `skipped` ('warn')."""
  if on_bad == 'error':
    raise error
  logging.warning('Skipping: %s', error)
  skipped.append(str(error))


def log_skipped(skipped: List[str], total: int, what: str, where: str) -> None:
  """One summary warning with the count of skipped items (on_bad='warn')."""
  if skipped:
    logging.warning('%s: skipped %d of %d %s with problems (on_bad="warn"); the '
                    'warnings above say what is wrong with each.', where, len(skipped),
                    total, what)
