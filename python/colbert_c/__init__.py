"""colbert_c: colbert.c from Python. RAGatouille's RAGTrainer, running the C
library (libcolbert) underneath, plus encode() and evaluate().

    from colbert_c import RAGTrainer      # instead of: from ragatouille import RAGTrainer

The exceptions: ColbertError (RuntimeError) carries a message of the C
library; malformed raw_data raises ValueError (RawDataError) as RAGatouille
does. Differences from RAGatouille: docs/python.md.
"""
from . import _native

_native.init()   # OpenBLAS: the best kernels for this CPU, before any BLAS call

from ._api import encode, evaluate, info  # noqa: E402
from ._errors import (BadChoiceError, ColbertError, EmptyRawDataError, ModelNotFoundError,  # noqa: E402
                      PassageTypeError, PrepareError, RawDataError)
from ._progress import set_progress  # noqa: E402
from ._trainer import RAGTrainer  # noqa: E402


def _version():
    try:
        from importlib.metadata import version
        return version("colbert-c")
    except Exception:
        return "unknown"


__version__ = _version()
__all__ = ["RAGTrainer", "encode", "evaluate", "info", "set_progress", "ColbertError", "RawDataError",
           "EmptyRawDataError", "PassageTypeError", "PrepareError", "ModelNotFoundError", "BadChoiceError"]
