"""What code made a result: the git commit of this checkout and the package versions.

Training writes it to WORKDIR/provenance.json and every evaluation report carries it, so
a results script can refuse a report made by other code.
"""

import importlib.metadata
import os
import platform
import subprocess
from typing import Any, Dict, Optional

PACKAGES = ('jax', 'jaxlib', 'flax', 'optax', 'orbax-checkpoint', 'grain', 'numpy', 'scipy',
            'ml-collections', 'pillow')
_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _git(*args: str) -> Optional[str]:
  try:
    out = subprocess.run(('git', '-C', _REPO) + args, capture_output=True, text=True,
                         timeout=30, check=True)
  except (OSError, subprocess.SubprocessError):
    return None
  return out.stdout.strip()


def current() -> Dict[str, Any]:
  """{'git_commit': sha or None (not a git checkout), 'git_dirty': bool (tracked files
  under ppl_jax/ or configs/ differ from the commit), 'python', 'packages': {name: version}}."""
  versions = {}
  for name in PACKAGES:
    try:
      versions[name] = importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
      versions[name] = None
  commit = _git('rev-parse', 'HEAD')
  dirty = None
  if commit is not None:
    dirty = bool(_git('status', '--porcelain', '--untracked-files=no', '--', 'ppl_jax',
                      'configs'))
  return {'git_commit': commit, 'git_dirty': dirty, 'python': platform.python_version(),
          'packages': versions}


def current_for_results(what: str = 'these results') -> Dict[str, Any]:
  """`current()`, warning on stdout when the tree is dirty (`what` will not be reusable)."""
  code = current()
  if code['git_dirty']:
    print(f'WARNING: ppl_jax/ or configs/ differ from the commit: {what} will not be '
          'reusable and do not belong in a results table.', flush=True)
  return code


def same_code(a: Optional[Dict[str, Any]], b: Optional[Dict[str, Any]]) -> bool:
  """True when both came from one clean commit with the same package versions."""
  return bool(a and b and a.get('git_commit') and not a.get('git_dirty')
              and not b.get('git_dirty') and a.get('git_commit') == b.get('git_commit')
              and a.get('packages') == b.get('packages'))
