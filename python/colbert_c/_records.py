"""raw_data and all_documents, checked as RAGatouille checks them and
written as the JSONL lines `colbert prepare --train-data` / `--corpus` read.

The library then reads those lines from memory through the same reader a
file goes through, so RAGTrainer.prepare_training_data and `colbert prepare`
on the same records written as JSONL give byte-identical files.
"""
import json
from collections.abc import Mapping

from ._errors import EmptyRawDataError, PassageTypeError, RawDataError

KINDS = ("pairs", "labeled", "triplets")


def _excerpt(x, n=60):
    s = repr(x)
    return s if len(s) <= n else s[: n - 3] + "..."


def _blank(s):
    return not s.strip(" \t\n\r\v\f")   # the library's test (cb_data_is_blank)


def _fields(rec, i):
    if isinstance(rec, (str, bytes, Mapping)) or not hasattr(rec, "__len__") or not hasattr(rec, "__getitem__"):
        raise RawDataError(f"raw_data[{i}] is {type(rec).__name__} {_excerpt(rec)}: expected a pair (query, passage), "
                           f"a labeled pair (query, passage, label) or a triplet (query, positive, negative)")
    return len(rec)


def _passage(x, i, field):
    """A passage field as JSON: a string, a list of strings or {"content": string}."""
    where = f"raw_data[{i}][{field}]"
    if isinstance(x, str):
        if _blank(x):
            raise RawDataError(f"{where}: empty passage")
        return x
    if isinstance(x, (list, tuple)):
        for k, t in enumerate(x):
            if not isinstance(t, str):
                raise PassageTypeError(f"{where}[{k}] is {type(t).__name__} {_excerpt(t)}: passages must be strings")
            if _blank(t):
                raise RawDataError(f"{where}[{k}]: empty passage")
        return list(x)
    if isinstance(x, Mapping):
        c = x.get("content")
        if not isinstance(c, str):
            raise PassageTypeError(f"{where}: a dict passage needs a 'content' string, found "
                                   f"{'no content' if c is None else type(c).__name__}")
        if _blank(c):
            raise RawDataError(f"{where}: empty passage")
        return {"content": c}
    raise PassageTypeError(f"{where} is {type(x).__name__} {_excerpt(x)}: expected a passage: a string, a list of "
                           f"strings or a dict with a 'content' string")


def _line(obj, where):
    try:
        return json.dumps(obj, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError as e:
        raise RawDataError(f"{where}: the text is not valid Unicode ({e.reason} at position {e.start})") from None


def records(raw_data, pairs_with_labels, positive_label, negative_label):
    """-> (kind, JSONL bytes). RAGatouille's rules: the first record decides
    the kind (2 fields: pairs; 3: labeled pairs when pairs_with_labels, else
    triplets); every query a string; a label either label."""
    if raw_data is None or isinstance(raw_data, (str, bytes, Mapping)):
        raise RawDataError(f"raw_data is {type(raw_data).__name__}: expected a list of pairs (query, passage), "
                           f"labeled pairs (query, passage, label) or triplets (query, positive, negative)")
    try:
        data = raw_data if isinstance(raw_data, (list, tuple)) else list(raw_data)
    except TypeError:
        raise RawDataError(f"raw_data is {type(raw_data).__name__}: expected a list of pairs, labeled pairs or "
                           f"triplets") from None
    if len(data) == 0:
        raise EmptyRawDataError("raw_data is empty: expected a list of pairs (query, passage), labeled pairs "
                                "(query, passage, label) or triplets (query, positive, negative)")
    n0 = _fields(data[0], 0)
    if n0 == 2:
        kind = "pairs"
    elif n0 == 3:
        kind = "labeled" if pairs_with_labels else "triplets"
    else:
        raise RawDataError(f"Raw data must be a list of pairs or triplets of strings: raw_data[0] has {n0} field"
                           f"{'' if n0 == 1 else 's'}: {_excerpt(data[0])}")
    if kind == "labeled":
        if positive_label == negative_label:
            raise RawDataError(f"positive_label and negative_label are both {positive_label!r}")
        if data[0][-1] not in [positive_label, negative_label]:
            raise RawDataError(f"Invalid value for label: {_excerpt(data[0])}: the label {data[0][-1]!r} is neither "
                               f"positive_label={positive_label!r} nor negative_label={negative_label!r}")
    out = []
    for i, rec in enumerate(data):
        nf = _fields(rec, i)
        if nf != n0:
            raise RawDataError(f"raw_data[{i}] has {nf} fields but raw_data[0] has {n0} ({kind.replace('labeled', 'labeled pairs')}): "
                               f"all records must be of one kind: {_excerpt(rec)}")
        q = rec[0]
        if not isinstance(q, str):
            raise RawDataError(f"Queries must be strings: raw_data[{i}][0] is {type(q).__name__} {_excerpt(q)}")
        if _blank(q):
            raise RawDataError(f"raw_data[{i}][0]: empty query")
        p = _passage(rec[1], i, 1)
        if kind == "pairs":
            line = [q, p]
        elif kind == "labeled":
            label = rec[2]
            if label == positive_label:
                lab = 1
            elif label == negative_label:
                lab = 0
            else:
                raise RawDataError(f"Label {label!r} must correspond to either positive_label ({positive_label!r}) or "
                                   f"negative_label ({negative_label!r})! (raw_data[{i}]: {_excerpt(rec)})")
            line = [q, p, lab]
        else:
            line = [q, p, _passage(rec[2], i, 2)]
        out.append(_line(line, f"raw_data[{i}]"))
    return kind, b"\n".join(out) + b"\n"


def documents(docs):
    """all_documents as JSONL {"text": ...} lines (None: no corpus)."""
    if docs is None:
        return None
    if isinstance(docs, (str, bytes, Mapping)):
        raise RawDataError(f"all_documents is {type(docs).__name__}: expected a list of strings")
    out = []
    for i, d in enumerate(docs):
        if not isinstance(d, str):
            raise PassageTypeError(f"all_documents[{i}] is {type(d).__name__} {_excerpt(d)}: documents must be strings")
        if _blank(d):
            raise RawDataError(f"all_documents[{i}]: empty document")
        out.append(_line({"text": d}, f"all_documents[{i}]"))
    return b"\n".join(out) + b"\n" if out else None
