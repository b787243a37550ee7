"""Work in a fresh Python process that imports this very edgellama package.

`edgellama bench` measures each thread count in a child process, so that its load time and peak
RSS are its own. The child must run the code the parent runs, whatever its working directory:
`python -m edgellama.bench` would import the first `edgellama` on the child's sys.path, which from
inside a source checkout is the checkout's edgellama/ (the working directory comes first), maybe
without its compiled modules (ImportError: cannot import name '_cpu_features') or of another
version than the parent's. PYTHONPATH is no cure: putting the parent's site-packages ahead of the
standard library would let any module there shadow it. So the child starts from a bootstrap that
drops the working directory from sys.path and loads the package from the parent's own folder, by
its path; everything else (numpy, gguf) is found as usual.
"""

from __future__ import annotations

import os
import subprocess
import sys
from typing import List

_BOOTSTRAP = """\
import importlib.util, os, sys
if sys.path and sys.path[0] in ("", os.getcwd()):
    del sys.path[0]
package_dir, module, *args = sys.argv[1:]
spec = importlib.util.spec_from_file_location("edgellama", os.path.join(package_dir, "__init__.py"),
                                              submodule_search_locations=[package_dir])
package = importlib.util.module_from_spec(spec)
sys.modules["edgellama"] = package
spec.loader.exec_module(package)
importlib.import_module(module)._child(args)
"""


def package_dir() -> str:
    """The folder of the edgellama package this process imported."""
    import edgellama

    return os.path.dirname(os.path.abspath(edgellama.__file__))


def run_child(module: str, args: List[str]) -> subprocess.CompletedProcess:
    """Runs `module._child(args)` (`module` is a module of this package, e.g. "edgellama.bench")
    in a fresh interpreter importing this package; returns the finished process, its stdout and
    stderr as text."""
    cmd = [sys.executable, "-c", _BOOTSTRAP, package_dir(), module, *args]
    return subprocess.run(cmd, capture_output=True, text=True)
