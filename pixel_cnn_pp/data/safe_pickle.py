"""Read pickled data files (CIFAR-10 batches, old Imagenet32/64 batches) without running code.

A pickle is a small program: loading one can call any importable function. These files
only need plain containers (dict, list, str, bytes, numbers) and NumPy arrays, so the
unpickler below resolves only the few NumPy names that rebuild an array and refuses every
other global with an error naming the file.
"""

import pickle
import warnings

from .loader import DataError

# What numpy's ndarray/dtype pickles refer to. numpy 2 writes 'numpy._core', numpy 1 (and
# the Python 2 era CIFAR files) 'numpy.core'; either spelling resolves in either version.
_NUMPY_GLOBALS = {
    ('numpy.core.multiarray', '_reconstruct'),
    ('numpy._core.multiarray', '_reconstruct'),
    ('numpy.core.numeric', '_frombuffer'),     # protocol 5 arrays
    ('numpy._core.numeric', '_frombuffer'),
    ('numpy', 'ndarray'),
    ('numpy', 'dtype'),
}


class UnsafePickleError(DataError):
    """A pickle asked for something other than plain containers and NumPy arrays."""


class _RestrictedUnpickler(pickle.Unpickler):

    def __init__(self, file, path):
        super().__init__(file, encoding='bytes')  # Python 2 pickles: keep str as bytes
        self._path = path

    def find_class(self, module, name):
        if (module, name) == ('_codecs', 'encode'):
            return self._latin1_encode
        if (module, name) in _NUMPY_GLOBALS:
            spellings = [module, module.replace('numpy._core', 'numpy.core'),
                         module.replace('numpy.core', 'numpy._core')]
            with warnings.catch_warnings():  # numpy 2 deprecates the numpy.core spelling
                warnings.simplefilter('ignore')
                for spelling in spellings:
                    try:
                        return super().find_class(spelling, name)
                    except (ImportError, AttributeError):
                        pass
        self._refuse(f'{module}.{name}')

    def _latin1_encode(self, text, encoding='latin1'):
        # Python 3 writes bytes into protocol-2 pickles as _codecs.encode(text, 'latin1');
        # allow exactly that and nothing else the codecs module could do.
        if not isinstance(text, str) or encoding not in ('latin1', 'latin-1'):
            self._refuse(f'_codecs.encode(..., {encoding!r})')
        return text.encode('latin1')

    def _refuse(self, what):
        raise UnsafePickleError(
            f'{self._path}: refusing to load this pickle: it asks for {what}, and only '
            'plain containers and NumPy arrays are allowed in a data file. The file is not a '
            'genuine data batch (tampered with, or a different file): delete it and download '
            'the data set again.')


def load_pickle(path, expected):
    """Unpickles `path` allowing only containers and NumPy arrays.

    Args:
      path: the file.
      expected: a few words on what the file should hold, for error messages.

    Raises:
      UnsafePickleError: the pickle refers to any other global (nothing was executed).
      DataError: the file is truncated or not a pickle.
    """
    try:
        with open(path, 'rb') as f:
            return _RestrictedUnpickler(f, path).load()
    except DataError:
        raise
    except OSError as e:
        raise DataError(f'{path}: cannot read ({e}); expected {expected}') from e
    except Exception as e:  # pickle reports damage as many exception types
        raise DataError(f'{path}: truncated or corrupt pickle ({type(e).__name__}: {e}); '
                        f'expected {expected}. Delete it and download again.') from e
