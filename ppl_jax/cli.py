"""Command-line plumbing of the entry points: a user mistake is one line on stderr, exit 2.

`run(main, prog)` replaces `absl.app.run(main)`. A bad flag or config override
(`--config.foo=1`, `--config.model.num_parts=ten`) and the errors that name a user's
mistake (`USER_ERRORS`: a bad config value, a missing or unwritable file, bad input data)
print `prog: error: <message>` without a traceback and exit with `EXIT_USER_ERROR`;
`--verbose` shows the traceback instead. Anything else (a bug) keeps its traceback.
"""

import re
import sys
from typing import Callable, List, Sequence

from absl import app
from absl import flags

EXIT_USER_ERROR = 2
USER_ERRORS = (ValueError, FileNotFoundError, FileExistsError, PermissionError,
               NotADirectoryError, IsADirectoryError)

_VERBOSE = flags.DEFINE_bool('verbose', False, 'Show the full traceback of an error.')


def _fail(prog: str, message: str) -> None:
  print(f'{prog}: error: {message}', file=sys.stderr, flush=True)
  # A library's reads still pending when the error surfaced (orbax's restore coroutines of
  # a checkpoint that does not fit) would print their own tracebacks at exit.
  sys.unraisablehook = lambda unraisable: None
  sys.exit(EXIT_USER_ERROR)


def _override_error(argv: Sequence[str], error: Exception) -> str:
  """The message for a config override ml_collections rejected while parsing flags."""
  while error.args and isinstance(error.args[0], BaseException):
    error = error.args[0]   # ml_collections wraps the KeyError in an AttributeError
  text = str(error.args[0]) if error.args else str(error)
  found = re.search(r"'([^']+)'", text)
  key = found.group(1) if found else text
  hint = re.search(r'Did you mean "[^"]+"', text)
  for arg in argv:
    name = arg.split('=', 1)[0]
    if name.startswith('--config.') and key in name[len('--config.'):].split('.'):
      advice = (hint.group(0).replace('"', "'") + '?' if hint
                else 'see the config file for the fields it defines')
      return f'{name}: the config has no field {key!r} ({advice}).'
  return f'a --config override was rejected: {text}'


def parse_flags(prog: str, argv: List[str]) -> List[str]:
  """absl flag parsing with bad flags and config overrides as one line."""
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    _fail(prog, f'{e} (--helpfull lists the flags).')
  except (AttributeError, KeyError) as e:   # ml_collections: an unknown config field
    _fail(prog, _override_error(argv, e))
  except (TypeError, ValueError) as e:      # ml_collections: a value of the wrong type
    _fail(prog, f'a --config override was rejected: {e}')
  return []


def run(main: Callable[[List[str]], None], prog: str) -> None:
  """`app.run(main)` with user mistakes as one line and exit code 2."""

  def guarded(argv):
    if len(argv) > 1:
      _fail(prog, f'unexpected arguments {argv[1:]} (flags are --name=value).')
    try:
      main(argv)
    except USER_ERRORS as e:
      if _VERBOSE.value:
        raise
      _fail(prog, f'{e} (--verbose shows the traceback)')

  app.run(guarded, flags_parser=lambda argv: parse_flags(prog, argv))
