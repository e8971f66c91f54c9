"""Pickles in the dialect of the official CIFAR archives (written by Python 2's cPickle), so a
CIFAR-10/100 folder can be written that reads exactly as the downloaded one: our reader
(``mislabel.data.formats``, ``encoding="bytes"``, bytes keys) and torchvision's (``latin1``) alike.
The tests' fixtures and the bench scripts write their CIFAR folders with it.
"""
from __future__ import annotations

import io
import pickle
import struct

__all__ = ["dumps_py2"]


class _Py2Pickler(pickle._Pickler):
    """Pickles as Python 2's cPickle wrote them: every str/bytes becomes a py2 ``str``.

    The official CIFAR files were written that way, which is why readers need ``encoding="bytes"``
    and get bytes keys. numpy's array constructor is named ``numpy.core.multiarray._reconstruct``
    as in those files, whichever module holds it in the numpy writing the fixture.
    """

    dispatch = dict(pickle._Pickler.dispatch)

    def save_py2_str(self, obj: str | bytes) -> None:
        data = obj.encode("latin-1") if isinstance(obj, str) else obj
        if len(data) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(data)]) + data)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(data)) + data)
        self.memoize(obj)

    dispatch[str] = save_py2_str
    dispatch[bytes] = save_py2_str

    def save_global(self, obj: object, name: str | None = None) -> None:
        if getattr(obj, "__name__", None) == "_reconstruct":
            self.write(pickle.GLOBAL + b"numpy.core.multiarray\n_reconstruct\n")
            self.memoize(obj)
        else:
            super().save_global(obj, name)


def dumps_py2(obj: object) -> bytes:
    """`obj` pickled the way the official (Python 2) CIFAR files are."""
    buffer = io.BytesIO()
    _Py2Pickler(buffer, protocol=2).dump(obj)
    return buffer.getvalue()
