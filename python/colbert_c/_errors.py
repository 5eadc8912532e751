"""The exceptions of colbert_c.

Malformed raw_data raises ValueError, as RAGatouille's explicit checks do.
Where RAGatouille fails less deliberately (raw_data[0] of an empty list is an
IndexError, a passage that is neither a string nor a list is a TypeError),
ours also derives from that class, so code written against RAGatouille's
exceptions keeps catching ours.
"""
from ._native import ColbertError  # noqa: F401  (RuntimeError: a failure the C library reported)


class RawDataError(ValueError):
    """raw_data (or all_documents) is malformed; the message names the record."""


class EmptyRawDataError(RawDataError, IndexError):
    """raw_data has no record (RAGatouille: IndexError from raw_data[0])."""


class PassageTypeError(RawDataError, TypeError):
    """A passage is neither a string, a list of strings nor {"content": string}."""


class PrepareError(ColbertError, ValueError):
    """The library could not make training data (no triplet, bad text, a file
    it could not write); RAGatouille raises ValueError for the first."""


class ModelNotFoundError(FileNotFoundError):
    """A model is neither a directory nor in the local Hugging Face cache
    (RAGatouille: OSError from the hub download)."""


class BadChoiceError(ValueError, KeyError):
    """An option outside its choices (RAGatouille: KeyError from its model table)."""

    def __str__(self):  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


# The library's hints name the CLI's options; in Python they read as arguments.
_CLI_WORDS = (
    ("--corpus FILE", "all_documents=[...]"), ("--train-data FILE or --beir DIR", "raw_data"),
    ("--num-new-negatives", "num_new_negatives"), ("--positive-label", "positive_label"),
    ("--negative-label", "negative_label"), ("--kind labeled", "pairs_with_labels=True"), ("(--kind)", ""),
    ("--miner-model PATH", "hard_negative_model=PATH"), ("--no-mining", "mine_hard_negatives=False"),
    ("--batch-size", "batch_size"), ("--dim", "dim"), ("--data DIR", "data_dir=DIR"), ("--resume", "resume="),
    ("--device cpu", "device='cpu'"), ("--overwrite", "overwrite=True"),
)


def pythonize(msg):
    """A library message with the CLI's option names turned into the Python API's."""
    for cli, py in _CLI_WORDS:
        msg = msg.replace(cli, py)
    return msg.replace("  ", " ").replace(" )", ")")
