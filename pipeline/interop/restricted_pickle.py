"""Reading pickles that come from elsewhere: only numpy arrays, dicts, lists, tuples, strings and numbers.

`pickle.load` runs whatever callable a file names (`os.system`, `subprocess.Popen`, ...). This unpickler resolves
no global but the handful numpy needs to rebuild arrays, dtypes and scalars, and refuses every other one before it
is imported or called, naming it (the stance of `torch.load(weights_only=True)`). Containers, strings and numbers
are built by pickle opcodes and need no global.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

from pipeline.interop import InteropError

ALLOWED_GLOBALS = frozenset({
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),   # numpy 1.x / 2.x
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),           # protocol 5 arrays
    ("_codecs", "encode"),                                                                    # protocol 2 bytes
})


class UnsafePickleError(InteropError):
    """A pickle names a global (a class or function) outside the admitted numpy set: it is not loaded."""


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that resolves only `ALLOWED_GLOBALS` and no persistent ids."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in ALLOWED_GLOBALS:
            return super().find_class(module, name)
        raise UnsafePickleError(f"refused to load {module}.{name}: only numpy arrays, dicts, lists, strings and "
                                "numbers are read from a pickle (nothing it names is imported or run)")

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafePickleError("refused a persistent id: only numpy arrays, dicts, lists, strings and numbers "
                                "are read from a pickle")


def load_restricted(path: str | Path) -> Any:
    """The object a pickle file holds, rebuilt with `RestrictedUnpickler` (UnsafePickleError for anything else)."""
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            return RestrictedUnpickler(fh).load()
    except UnsafePickleError as exc:
        raise UnsafePickleError(f"{path}: {exc}") from None
    except OSError as exc:
        raise InteropError(f"cannot read {path}: {exc.strerror or exc}") from exc
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError) as exc:
        raise InteropError(f"{path}: not a readable pickle ({type(exc).__name__}: {exc})") from None
