/* libcolbert.h: the public C API of colbert.c, in one include.
 *
 * colbert.c trains ColBERT retrievers in C: it turns query-passage data into
 * ColBERT training files (with random or mined hard negatives), trains a
 * ColBERT from a ColBERT checkpoint or from a plain BERT-like encoder, and
 * writes Hugging Face checkpoints that colbert-ai, RAGatouille and PyLate
 * load unchanged. Build: `make` gives build/libcolbert.a; link with
 *   -fopenmp build/libcolbert.a $(pkg-config --libs openblas jansson libutf8proc) -lm
 * (plus $(pkg-config --libs cairo) when it was built with cairo, and the CUDA
 * libraries when it was built with CUDA: `make print-libs` prints the line)
 * and compile with -Isrc $(pkg-config --cflags openblas).
 *
 * Every symbol the library exports, and every inline function of its
 * headers, starts with cb_ (module_verb behind it: cb_bert_forward,
 * cb_trainer_train), so it links beside other code.
 *
 * The whole job, as RAGatouille's RAGTrainer does it (train.h):
 *
 *   #include "libcolbert.h"
 *   cb_err err;
 *   trainer *t = cb_trainer_new("my-colbert", "sentence-transformers/all-MiniLM-L6-v2",
 *                            "en", -1, &err);
 *   const char *pairs[] = {"pairs.jsonl"};   // ["query", "passage"] per line
 *   if (!t || cb_trainer_prepare_data(t, pairs, 1, NULL, 0, "data/", NULL, &err))
 *       { fprintf(stderr, "%s\n", err.msg); return 1; }
 *   train_opts o;
 *   cb_train_opts_default(&o);                   // RAGTrainer.train's defaults
 *   o.maxsteps = 1000;
 *   if (cb_trainer_train(t, &o, &err) == TRAIN_ERROR) { fprintf(stderr, "%s\n", err.msg); return 1; }
 *   printf("best checkpoint: %s\n", cb_trainer_best_path(t));
 *   cb_trainer_free(t);
 *
 * The pieces, each usable alone:
 *   model.h       find a model (directory or hub id in the local Hugging Face
 *                 cache), read config.json and the sentence-transformers files
 *   tokenizer.h   Hugging Face tokenizers (WordPiece, Unigram, BPE), id for id
 *   safetensors.h read (validated, memory-mapped) and write .safetensors
 *   ops.h         the compute interface: devices (cb_ops_open "cpu" / "cuda"),
 *                 device buffers, and every operation the model runs; the CPU
 *                 backend is src/cpu/, a CUDA one mirrors it in src/cuda/
 *   backbone.h    the encoder interface: a table of model families (BERT, ...),
 *                 load, forward and backward on packed batches, named tensors
 *   bert.h        the BERT architecture behind it
 *   encoder.h     text -> sentence embeddings, as sentence-transformers
 *   colmodel.h    a ColBERT model: load, save, encode queries and documents
 *   prepare.h     training data from pairs / labeled pairs / triplets / BEIR
 *   miner.h       hard negatives from a dense model and a nearest-neighbour index
 *   knn.h         nearest neighbours by inner product: exact, and IVF-flat
 *   step.h        one training step (loss, gradients, AdamW), equal to PyTorch
 *   comm.h        the processes of a data-parallel run (serial, or MPI under
 *                 mpirun: cb_comm_init early in main, train_opts.comm)
 *   train.h       the training run: checkpoints, validation, resume
 *   plot.h        pictures as SVG and PNG (the training curve);
 *                 cb_plot_have_png: whether this build draws PNGs (cairo)
 *   eval.h        nDCG@10, MRR@10, Recall@k of a ColBERT on a BEIR dataset
 *   job.h         whole jobs as `colbert prepare|eval|encode` run them (the CLI
 *                 and the Python package share them), and the thread count
 *
 * Conventions. Functions that can fail because of the world (files, input,
 * memory) return non-zero or NULL and fill a cb_err (common.h) whose msg
 * names the file, line or byte, what was expected and what was found; they
 * never exit (an allocation sized by the data, a model or a batch that
 * fails is such an error). Broken invariants abort with file and line (CB_ASSERT).
 * Objects come in _load/_new and _free pairs; a caller frees what it loads.
 * Output files are written under a temporary name and renamed when
 * complete. Threads: OpenMP (omp_set_num_threads) and OpenBLAS.
 * A program should call cb_blas_init(argc, argv) first (blas.h): it makes
 * OpenBLAS use the best kernels of the CPU.
 */
#ifndef LIBCOLBERT_H
#define LIBCOLBERT_H
#include "common.h"
#include "blas.h"
#include "model.h"
#include "tokenizer.h"
#include "safetensors.h"
#include "ops.h"
#include "comm.h"
#include "backbone.h"
#include "bert.h"
#include "encoder.h"
#include "colbert.h"
#include "colmodel.h"
#include "prepare.h"
#include "knn.h"
#include "miner.h"
#include "loss.h"
#include "optim.h"
#include "step.h"
#include "train.h"
#include "plot.h"
#include "eval.h"
#include "job.h"
#endif
