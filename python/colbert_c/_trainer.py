"""RAGTrainer: RAGatouille 0.0.9's trainer, same signatures, defaults and
return values, running colbert.c (libcolbert) underneath.

    from colbert_c import RAGTrainer          # was: from ragatouille import RAGTrainer
    trainer = RAGTrainer(model_name="my-colbert", pretrained_model_name="colbert-ir/colbertv2.0")
    trainer.prepare_training_data(raw_data=pairs, all_documents=docs)
    best = trainer.train(batch_size=32)

Every difference from RAGatouille is listed in docs/python.md.
"""
import os
import shutil
import signal
from pathlib import Path
from types import SimpleNamespace

from . import _native, _progress, _records
from ._errors import BadChoiceError, ColbertError, ModelNotFoundError, PrepareError, pythonize

DATA_FILES = ("queries.train.colbert.tsv", "corpus.train.colbert.tsv", "triples.train.colbert.jsonl")
MANIFEST = "manifest.train.colbert.json"   # beside them: sizes and content hashes (train checks the set)
MODEL_SIZES = ("small", "base", "large")


def _threads(threads):
    if threads is None:
        return 0
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads={threads!r}: expected a positive integer (or None for all cores)")
    return threads


def _resolve(name, what, hint):
    try:
        return _native.resolve_model(os.fspath(name))
    except ColbertError as e:
        raise ModelNotFoundError(f"{what}: {e}{hint}") from None


def _new_dirs(path):
    """The directories that creating `path` would create, outermost first."""
    made = []
    p = Path(os.path.abspath(path))
    while not p.exists():
        made.append(p)
        if p.parent == p:
            break
        p = p.parent
    return made[::-1]


def _remove_empty(dirs):
    for d in reversed(dirs):
        try:
            d.rmdir()
        except OSError:
            break


class RAGTrainer:
    """Main trainer to fine-tune/train ColBERT models with a few lines."""

    def __init__(self, model_name: str, pretrained_model_name: str, language_code: str = "en",
                 n_usable_gpus: int = -1):
        """
        model_name: the run's name (its checkpoints go to output_dir/model_name, see train()).
        pretrained_model_name: a ColBERT checkpoint, colbert-ai's or PyLate's (fine-tune), or an
            encoder of a supported family (a new ColBERT): a directory or a Hugging Face hub id in
            the local cache (nothing is downloaded).
        language_code: picks the hard-negative miner's dense model ("en", "zh", "fr", other).
        n_usable_gpus: -1 all GPUs or the CPU, 0 the CPU (the package is built for the CPU).
        """
        for k, v in (("model_name", model_name), ("language_code", language_code)):
            if not isinstance(v, str) or not v:
                raise TypeError(f"{k} must be a non-empty string, found {v!r}")
        if not isinstance(pretrained_model_name, (str, os.PathLike)):
            raise TypeError(f"pretrained_model_name must be a string or a path, found {pretrained_model_name!r}")
        if isinstance(n_usable_gpus, bool) or not isinstance(n_usable_gpus, int) or n_usable_gpus < -1:
            raise ValueError(f"n_usable_gpus={n_usable_gpus!r}: expected -1 (all), 0 (CPU) or a count")
        self.model_name = model_name
        self.pretrained_model_name = os.fspath(pretrained_model_name)
        self.language_code = language_code
        self.n_usable_gpus = n_usable_gpus
        # RAGatouille loads the base model here; we find it (a missing model fails here too)
        self.pretrained_model_path = _resolve(
            self.pretrained_model_name, "pretrained_model_name",
            " (give a local directory, or put the model in the Hugging Face cache first: "
            "huggingface-cli download ORG/NAME)")
        self.model = None                 # RAGatouille: its ColBERT wrapper; the C library holds ours
        self.negative_miner = None        # after prepare_training_data with mining: what mined
        self.collection = []              # after prepare_training_data: the passages, list index = passage id
        self.queries = None               # after prepare_training_data: the set of query strings
        self.raw_data = None
        self.training_triplets = []       # after prepare_training_data: [qid, pos_pid, neg_pid], file order
        self.data_dir = None
        self.prepare_stats = None         # beyond: what prepare did (kind, counts, seconds, miner report)
        self.best_checkpoint = None       # beyond: after train()
        self.last_checkpoint = None       # beyond: the newest checkpoint (what train(resume=True) continues)

    def add_documents(self, documents: list):
        """Documents for the next prepare_training_data's collection (negatives come from it)."""
        self.collection += list(documents)

    def export_training_data(self, path):
        """Copy the three files prepare_training_data wrote into directory `path`."""
        if self.data_dir is None:
            raise ValueError("no training data yet: call prepare_training_data first")
        os.makedirs(path, exist_ok=True)
        for name in DATA_FILES + ((MANIFEST,) if (Path(self.data_dir) / MANIFEST).exists() else ()):
            shutil.copyfile(Path(self.data_dir) / name, Path(path) / name)

    def prepare_training_data(self, raw_data, all_documents=None, data_out_path="./data/",
                              num_new_negatives: int = 10, hard_negative_minimum_rank: int = 10,
                              mine_hard_negatives: bool = True, hard_negative_model_size: str = "small",
                              pairs_with_labels: bool = False, positive_label=1, negative_label=0, *,
                              hard_negative_model=None, seed: int = 42, threads=None, quiet: bool = False):
        """
        Turn raw_data into ColBERT training files in data_out_path (created if missing):
        queries.train.colbert.tsv, corpus.train.colbert.tsv, triples.train.colbert.jsonl.

        raw_data: a list of pairs (query, passage), labeled pairs (query, passage, label) with
            pairs_with_labels=True, or triplets (query, positive(s), negative(s)); a passage is a
            string, a list of strings or {"content": string}.
        all_documents: more documents for the collection (negatives are drawn from it).
        num_new_negatives: new negatives per query, mined (mine_hard_negatives) or random.
        hard_negative_minimum_rank: mined candidates start at this rank.
        hard_negative_model_size: "small", "base" or "large": the dense model for language_code.
        Beyond RAGatouille (keyword-only): hard_negative_model (a sentence-transformers directory
        or hub id instead of the default), seed (of every random choice; 42), threads, quiet.

        Returns data_out_path. Sets self.queries (set of query strings), self.collection (the
        passages; list index = passage id), self.training_triplets and self.data_dir.
        """
        if not isinstance(num_new_negatives, int) or num_new_negatives < 0:
            raise ValueError(f"num_new_negatives={num_new_negatives!r}: expected an integer >= 0")
        if not isinstance(hard_negative_minimum_rank, int) or hard_negative_minimum_rank < 0:
            raise ValueError(f"hard_negative_minimum_rank={hard_negative_minimum_rank!r}: expected an integer >= 0")
        kind, train = _records.records(raw_data, pairs_with_labels, positive_label, negative_label)
        docs = list(self.collection) + (list(all_documents) if all_documents is not None else [])
        corpus = _records.documents(docs)
        mining = bool(mine_hard_negatives) and num_new_negatives > 0
        miner = None
        if mining:
            if hard_negative_model is not None:
                miner = _resolve(hard_negative_model, "hard_negative_model",
                                 " (or use random negatives: mine_hard_negatives=False)")
            else:
                if hard_negative_model_size not in MODEL_SIZES:
                    raise BadChoiceError(f"hard_negative_model_size={hard_negative_model_size!r}: expected "
                                         f"'small', 'base' or 'large'")
                name = _native.miner_default_model(self.language_code, hard_negative_model_size)
                miner = _resolve(
                    name, f"hard-negative mining needs the dense model {name} (language_code="
                    f"{self.language_code!r}, hard_negative_model_size={hard_negative_model_size!r})",
                    f". Pass a sentence-transformers model directory or hub id with hard_negative_model=..., "
                    f"put the model in the Hugging Face cache (huggingface-cli download {name}), or use random "
                    f"negatives with mine_hard_negatives=False")
        out = os.fspath(data_out_path)
        made = _new_dirs(out)
        lib_quiet, tqdm = _progress.resolve(quiet)
        try:
            with _progress.Bars(tqdm):
                r = _native.prepare(
                    out, train, corpus, kind=kind, num_new_negatives=num_new_negatives,
                    positive_label="1", negative_label="0", seed=int(seed), mine=mining, miner_model=miner,
                    language=self.language_code, miner_size=hard_negative_model_size if mining else "small",
                    min_rank=hard_negative_minimum_rank, quiet=lib_quiet, threads=_threads(threads),
                    train_name="raw_data", corpus_name="all_documents")
        except ColbertError as e:
            _remove_empty(made)
            raise PrepareError(pythonize(str(e))) from None
        except BaseException:
            _remove_empty(made)
            raise
        import numpy as np
        self.data_dir = Path(out)
        self.queries = set(r["queries"])
        self.collection = r["collection"]
        self.training_triplets = np.frombuffer(r["triplets"], dtype=np.uint32).reshape(-1, 3).tolist()
        self.negative_miner = SimpleNamespace(model=miner, min_rank=hard_negative_minimum_rank,
                                              report=r["miner_report"]) if r["mined"] else None
        self.prepare_stats = {k: v for k, v in r.items() if k not in ("queries", "collection", "triplets")}
        return data_out_path

    def train(self, batch_size: int = 32, nbits: int = 2, maxsteps: int = 500_000, use_ib_negatives: bool = True,
              learning_rate: float = 5e-6, dim: int = 128, doc_maxlen: int = 256, use_relu: bool = False,
              warmup_steps="auto", accumsteps: int = 1, *, data_dir=None, output_dir="checkpoints",
              loss: str = "colbert", epochs: int = 1, seed: int = 12345, schedule: str = "run",
              save_every=None, keep_checkpoints=None, val_fraction: float = 0.05, val_queries: int = 128,
              val_data=None, val_beir=None, val_split: str = "dev", val_docs: int = 2000, query_maxlen=None,
              dropout: bool = True, resume=None, overwrite: bool = False, threads=None, device=None,
              quiet: bool = False) -> str:
        """
        Train (a new ColBERT from an encoder) or fine-tune (a ColBERT checkpoint) on the files of
        prepare_training_data. Returns the best checkpoint's directory (by validation nDCG@10;
        without validation, the last).

        RAGatouille's arguments: batch_size (triples per step), nbits (kept in the metadata),
        maxsteps, use_ib_negatives, learning_rate, dim, doc_maxlen, use_relu, warmup_steps
        ("auto": 10% of the steps), accumsteps.
        Beyond (keyword-only), as `colbert train` offers them: data_dir (default: the last
        prepare_training_data's), output_dir (checkpoints go to output_dir/model_name/step-N),
        loss ("colbert": colbert-ai's, or "contrastive": PyLate's), epochs, seed, schedule ("run":
        warmup and decay over the steps this run takes; "ragatouille": RAGatouille's arithmetic),
        save_every, keep_checkpoints, val_fraction / val_queries (held-out training queries),
        val_data (a directory of validation triples), val_beir / val_split (a BEIR split),
        val_docs, query_maxlen, dropout, resume (a step-N directory, or True for this trainer's
        last checkpoint), overwrite (replace an earlier run of output_dir/model_name), threads, device (None: a GPU if the library has CUDA and one is there,
        else the CPU; "cpu", "cuda", "cuda:N"), quiet.

        Ctrl-C (SIGINT) ends the current step, writes a resumable checkpoint (self.last_checkpoint)
        and raises KeyboardInterrupt; train(resume=True) continues it.
        """
        if loss not in ("colbert", "contrastive"):
            raise ValueError(f"loss={loss!r}: expected 'colbert' or 'contrastive'")
        if schedule not in ("run", "ragatouille"):
            raise ValueError(f"schedule={schedule!r}: expected 'run' or 'ragatouille'")
        if warmup_steps == "auto":
            warmup = -1
        elif isinstance(warmup_steps, int) and not isinstance(warmup_steps, bool) and warmup_steps >= 0:
            warmup = warmup_steps
        else:
            raise ValueError(f"warmup_steps={warmup_steps!r}: expected 'auto' or an integer >= 0")
        if val_beir is not None and val_data is not None:
            raise ValueError("val_beir and val_data exclude each other")
        if device is not None:
            try:
                _native.check_device(device)
            except ColbertError as e:
                raise ValueError(f"device={device!r}: {e}") from None
        if resume is True:
            if self.last_checkpoint is None:
                raise ValueError("resume=True: this trainer has no checkpoint yet (pass resume='DIR/step-N')")
            resume = self.last_checkpoint
        elif resume is not None:
            resume = os.fspath(resume)
        data = data_dir if data_dir is not None else self.data_dir
        if resume is None:
            if data is None:
                raise ValueError("no training data: call prepare_training_data first, or pass data_dir=DIR "
                                 "(a directory with " + ", ".join(DATA_FILES) + ")")
            missing = [n for n in DATA_FILES if not (Path(data) / n).is_file()]
            if missing:
                raise FileNotFoundError(f"{data}: missing {', '.join(missing)} (prepare_training_data writes them)")
        lib_quiet, tqdm = _progress.resolve(quiet)
        kw = dict(language=self.language_code, n_gpus=self.n_usable_gpus,
                  data_dir=None if data is None else os.fspath(data), output_dir=os.fspath(output_dir),
                  bsize=batch_size, nbits=nbits, maxsteps=maxsteps, lr=float(learning_rate),
                  dim=0 if dim == 128 else dim,   # 0: 128 for a new ColBERT, a checkpoint's own when fine-tuning
                  doc_maxlen=doc_maxlen, query_maxlen=query_maxlen or 0, warmup=warmup,
                  ragatouille_schedule=int(schedule == "ragatouille"), accumsteps=accumsteps,
                  use_ib_negatives=int(bool(use_ib_negatives)), contrastive=int(loss == "contrastive"),
                  relu=int(bool(use_relu)), epochs=epochs, seed=int(seed), dropout=int(bool(dropout)),
                  save_every=save_every or 0, keep_checkpoints=-1 if keep_checkpoints is None else keep_checkpoints,
                  val_data=None if val_data is None else os.fspath(val_data),
                  val_beir=None if val_beir is None else os.fspath(val_beir), val_split=val_split,
                  val_fraction=float(val_fraction), val_queries=val_queries, val_docs=val_docs, resume=resume,
                  quiet=int(lib_quiet or tqdm is not None), threads=_threads(threads), device=device,
                  overwrite=int(bool(overwrite)))
        pretrained = resume if resume is not None else self.pretrained_model_path
        with _progress.Bars(tqdm):
            try:
                interrupted, best, last, sig = _native.train(self.model_name, pretrained, **kw)
            except ColbertError as e:
                raise ColbertError(pythonize(str(e))) from None
        if last is not None:
            self.last_checkpoint = last
        if interrupted:
            if sig == signal.SIGTERM:
                os.kill(os.getpid(), signal.SIGTERM)   # the checkpoint is written: now the signal's own effect
            where = (f"the checkpoint {last} resumes it: train(resume=True) or train(resume={last!r})"
                     if last else "no checkpoint was written yet")
            raise KeyboardInterrupt(f"training interrupted; {where}")
        self.best_checkpoint = best if best is not None else last
        return self.best_checkpoint
