"""test_family_train.py: ColBERT training from plain encoders of the RoBERTa
families and ModernBERT, end to end (issue 24, points 4-5; issue 27). The
small seeded RoBERTa (byte-level BPE) and XLM-RoBERTa (Unigram) encoders of
tests/ref/gen_roberta.py and the ModernBERT one of tests/ref/gen_modernbert.py
(byte-level BPE, a local layer with a window of 4; the peers load it with
their transformers 4.x), as they come before PyLate's markers are added
(F_plain: no [unused0] / [unused1], no "[Q] " / "[D] "):
  - `colbert train --pretrained F_plain` adds the markers "[Q] " / "[D] " to
    the tokenizer and grows the word embeddings for them (as PyLate's
    models.ColBERT does), trains, and writes checkpoints whose tokenizer.json
    lists each marker once, whose config.json vocab_size is the grown row
    count and whose artifact.metadata names the markers;
  - the checkpoint loads back without adding anything (`colbert encode`,
    fine-tuning from it: same rows);
  - colbert-ai (Checkpoint) and PyLate (models.ColBERT), in the peers venv
    of scripts/setup_peers.sh, compute the query and document vectors of
    real NFCorpus texts that `colbert encode --colbert query|doc` gives,
    within 1e-5 (measured: about 2e-7). PyLate's own punctuation skiplist
    (convert_tokens_to_ids of each symbol) is not colbert-ai's (the first
    piece of each symbol, encoded: ours) on these vocabularies, so PyLate's
    document vectors are compared under colbert-ai's skiplist, given to it
    as skiplist_words.
Sentence embeddings of the XLM-R sentence-transformers directory, tokenized
in C, equal sentence-transformers'; and `colbert prepare --miner-model` on
it mines hard negatives for French and German pairs, its embeddings equal
to sentence-transformers' (normalised); with prompts in
config_sentence_transformers.json (e5's "query: " / "passage: ", query /
document, a default_prompt_name), to sentence-transformers' with the same
prompts.
"""
import json
import os
import shutil
import subprocess

import numpy as np
import pytest
from hubcache import hub_cache
from texts import first_texts

BIN = os.environ["COLBERT_BIN"]
DATA = os.environ["COLBERT_DATASETS"]
REF = os.environ["COLBERT_REF"]
TMP = os.environ["COLBERT_TMP"]
PEERS = os.environ.get("COLBERT_PEERS_PY",
                       os.path.expanduser("~/.cache/colbert.c/venv-peers/bin/python"))
LOADER = os.path.join(os.path.dirname(__file__), "peers", "load_family_checkpoint.py")
TOL = 1e-5
MARKER_MSG = "added the ColBERT markers"


def run(args, **kw):
    r = subprocess.run([BIN] + args, capture_output=True, text=True, **kw)
    assert r.returncode == 0, " ".join(args) + "\n" + r.stderr[-3000:]
    return r


@pytest.fixture(scope="module")
def data():
    out = os.path.join(TMP, "family_data")
    run(["prepare", "--beir", os.path.join(DATA, "nfcorpus"), "--split", "train", "--no-mining", "--out", out,
         "--quiet"])
    return out


def added_tokens(ckpt):
    with open(os.path.join(ckpt, "tokenizer.json"), encoding="utf-8") as f:
        return [a["content"] for a in json.load(f)["added_tokens"]]


def config(d):
    with open(os.path.join(d, "config.json")) as f:
        return json.load(f)


def encode_colbert(ckpt, kind, path, out):
    r = run(["encode", "--colbert", kind, "--model", ckpt, "--input", path, "--output", out, "--threads", "2"])
    assert MARKER_MSG not in r.stderr, r.stderr   # the checkpoint has its markers
    return out


@pytest.mark.parametrize("fam", ["xlmr", "roberta", "modernbert"])
def test_train_from_plain_encoder(fam, data):
    assert os.path.exists(PEERS), f"{PEERS} missing: run scripts/setup_peers.sh (make test does)"
    plain = os.path.join(REF, f"{fam}_plain")
    rows = config(plain)["vocab_size"]
    assert "[Q] " not in added_tokens(plain)
    runs = os.path.join(TMP, f"family_runs_{fam}")
    r = run(["train", "--threads", "2", "--model-name", fam, "--pretrained", plain, "--data", data, "--output-dir",
             runs, "--batch-size", "4", "--maxsteps", "2", "--doc-maxlen", "96", "--val-fraction", "0", "--lr",
             "1e-4"])
    assert MARKER_MSG in r.stderr and f"{rows} -> {rows + 2} rows" in r.stderr, r.stderr[-2000:]
    ckpt = r.stdout.strip().splitlines()[-1]
    assert ckpt.endswith("step-000002")
    # step 2's tokenizer came from step 1's files: each marker once
    for step in ("step-000001", "step-000002"):
        d = os.path.join(runs, fam, step)
        toks = added_tokens(d)
        assert toks.count("[Q] ") == 1 and toks.count("[D] ") == 1, (step, toks)
        assert config(d)["vocab_size"] == rows + 2
        with open(os.path.join(d, "artifact.metadata")) as f:
            meta = json.load(f)
        assert meta["query_token_id"] == "[Q] " and meta["doc_token_id"] == "[D] ", meta
    # the markers' rows are trained: AdamW's first moments there are not 0
    # (the word embeddings are the first tensor of the parameter block)
    from safetensors.numpy import load_file
    H = config(plain)["hidden_size"]
    m = load_file(os.path.join(ckpt, "training_state.safetensors"))["adamw.m"]
    assert all(np.abs(m[r * H:(r + 1) * H]).max() > 0 for r in (rows, rows + 1))
    # fine-tuning from the checkpoint adds nothing
    r = run(["train", "--threads", "2", "--model-name", fam + "_ft", "--pretrained", ckpt, "--data", data,
             "--output-dir", runs, "--batch-size", "4", "--maxsteps", "1", "--doc-maxlen", "96", "--val-fraction",
             "0"])
    assert MARKER_MSG not in r.stderr, r.stderr[-2000:]
    ft = r.stdout.strip().splitlines()[-1]
    assert config(ft)["vocab_size"] == rows + 2 and added_tokens(ft) == added_tokens(ckpt)

    q, d = first_texts(os.path.join(DATA, "nfcorpus", "queries.jsonl"), 12), first_texts(os.path.join(DATA, "nfcorpus",
                                                                                          "corpus.jsonl"), 24)
    qf, df = os.path.join(TMP, f"family_{fam}_q.txt"), os.path.join(TMP, f"family_{fam}_d.txt")
    for path, items in ((qf, q), (df, d)):
        with open(path, "w", encoding="utf-8") as f:
            f.write("\n".join(items) + "\n")
    oq = np.load(encode_colbert(ckpt, "query", qf, os.path.join(TMP, f"family_{fam}_q.npy")))
    od_path = encode_colbert(ckpt, "doc", df, os.path.join(TMP, f"family_{fam}_d.npy"))
    od, ol = np.load(od_path), np.load(od_path[:-4] + ".lengths.npy")
    out = os.path.join(TMP, f"family_{fam}_peers")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", CUDA_VISIBLE_DEVICES="")
    r = subprocess.run([PEERS, LOADER, ckpt, qf, df, out], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr[-4000:]
    with open(os.path.join(out, "info.json")) as f:
        info = json.load(f)
    for peer, key in (("colbert_ai", "colbert_ai"), ("pylate", "pylate")):
        i = info[key]
        assert (i["q_marker"], i["d_marker"]) == (rows, rows + 1), (peer, i)   # no marker added again
        assert i["len_tokenizer"] == rows + 2 and i["rows"] == rows + 2, (peer, i)
        pq = np.load(os.path.join(out, f"{peer}_q.npy"))
        pd, pl = np.load(os.path.join(out, f"{peer}_d.npy")), np.load(os.path.join(out, f"{peer}_d.lengths.npy"))
        assert pq.shape == oq.shape, (peer, pq.shape, oq.shape)
        assert list(pl) == list(ol), (peer, list(pl), list(ol))
        dq, dd = np.abs(pq - oq).max(), np.abs(pd - od).max()
        print(f"\n{fam} {peer}: {len(q)} queries {pq.shape}, max abs diff {dq:.3g}; {len(d)} documents, "
              f"{pd.shape[0]} vectors, max abs diff {dd:.3g}")
        assert dq <= TOL and dd <= TOL
    print(f"{fam}: PyLate's default skiplist keeps {sum(info['pylate']['default_skiplist_lengths'])} document "
          f"vectors, colbert-ai's {int(ol.sum())}")


def st_embed(model, texts, call="encode(t"):
    code = ("import json, sys, numpy as np\n"
            "from sentence_transformers import SentenceTransformer\n"
            "m = SentenceTransformer(sys.argv[1], device='cpu')\n"
            "t = json.load(open(sys.argv[2], encoding='utf-8'))\n"
            f"np.save(sys.argv[3], m.{call}, batch_size=8, convert_to_numpy=True))\n")
    inp, out = os.path.join(TMP, "family_st_in.json"), os.path.join(TMP, "family_st_out.npy")
    with open(inp, "w", encoding="utf-8") as f:
        json.dump(texts, f)
    py = os.path.join(os.environ["COLBERT_ROOT"], ".venv", "bin", "python")
    r = subprocess.run([py, "-c", code, model, inp, out], capture_output=True, text=True,
                       env=dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", CUDA_VISIBLE_DEVICES=""))
    assert r.returncode == 0, r.stderr[-3000:]
    return np.load(out)


# French and German pairs (accents, apostrophes, umlauts, ß) for the miner
FR = ["le café", "la pluie", "les écoles", "l'hôpital", "le marché", "la forêt", "les vélos", "la bibliothèque",
      "le fromage", "les élèves"]
DE = ["die Straße", "das Gemüse", "die Bäckerei", "der Fluss", "die Übung", "das Gebäude", "die Brücke", "der Käse",
      "die Schüler", "das Krankenhaus"]
FR_V = ["ouvre à huit heures", "coûte plus cher en été", "est fermé le dimanche", "attire beaucoup de visiteurs",
        "a été rénové l'année dernière"]
DE_V = ["öffnet um acht Uhr", "ist im Sommer teurer", "bleibt am Sonntag geschlossen", "zieht viele Besucher an",
        "wurde letztes Jahr renoviert"]


def pairs():
    out = []
    for i, s in enumerate(FR):
        v = FR_V[i % 5]
        out.append([f"Pourquoi {s} {v.split()[0]} ?", f"{s.capitalize()} {v}, d'après la mairie. Ça reste fréquenté."])
    for i, s in enumerate(DE):
        v = DE_V[i % 5]
        out.append([f"Warum {v.split()[0]} {s}?", f"{s[0].upper() + s[1:]} {v}, sagt die Stadtverwaltung. Größe "
                    "und Öffnungszeiten ändern sich."])
    return out


def test_sentence_embeddings_xlmr():
    model = os.path.join(REF, "xlmr_model")
    texts = [t for p in pairs()[::3] for t in p] + first_texts(os.path.join(DATA, "nfcorpus", "corpus.jsonl"), 6)
    inp, out = os.path.join(TMP, "family_sent.txt"), os.path.join(TMP, "family_sent.npy")
    with open(inp, "w", encoding="utf-8") as f:
        f.write("\n".join(texts) + "\n")
    run(["encode", "--model", model, "--input", inp, "--output", out, "--threads", "2", "--quiet"])
    ours, want = np.load(out), st_embed(model, texts)
    assert ours.shape == want.shape
    diff = np.abs(ours - want).max()
    print(f"\nxlmr sentence embeddings: {len(texts)} texts, max abs diff {diff:.3g}")
    assert diff <= TOL * max(1.0, float(np.abs(want).max()))


def prompt_model(name, cfg):
    """The XLM-R sentence-transformers directory with cfg as its
    config_sentence_transformers.json."""
    d = os.path.join(TMP, name)
    shutil.rmtree(d, ignore_errors=True)
    shutil.copytree(os.path.join(REF, "xlmr_model"), d)
    with open(os.path.join(d, "config_sentence_transformers.json"), "w") as f:
        json.dump(cfg, f)
    return d


# the prompts of config_sentence_transformers.json, the prompts mining uses,
# and how sentence-transformers is asked for the same embeddings
PROMPTS = {
    None: (None, "", "", "encode(t", "encode(t"),
    # e5: sentence-transformers' encode_document would take its built-in empty
    # "document" prompt over "passage"; the model card's "passage: " is meant
    "e5": ({"prompts": {"query": "query: ", "passage": "passage: "}, "default_prompt_name": None}, "query: ",
           "passage: ", "encode(t, prompt_name='query'", "encode(t, prompt_name='passage'"),
    "document": ({"prompts": {"query": "Représente la question : ", "document": "Dokument: "}}, "Représente la question : ",
                 "Dokument: ", "encode_query(t", "encode_document(t"),
    "default": ({"prompts": {"retrieval": "Retrieve: "}, "default_prompt_name": "retrieval"}, "Retrieve: ", "Retrieve: ",
                "encode(t", "encode(t"),
}


@pytest.mark.parametrize("prompts", list(PROMPTS))
def test_mining_multilingual(prompts):
    cfg, pq, pd, call_q, call_d = PROMPTS[prompts]
    model = prompt_model(f"family_prompts_{prompts}", cfg) if cfg else os.path.join(REF, "xlmr_model")
    recs = pairs()
    inp = os.path.join(TMP, "family_pairs.jsonl")
    with open(inp, "w", encoding="utf-8") as f:
        for rec in recs:
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")
    out, emb = os.path.join(TMP, f"family_mined_{prompts}"), os.path.join(TMP, f"family_emb_{prompts}")
    r = run(["prepare", "--train-data", inp, "--out", out, "--miner-model", model, "--hard-negative-min-rank", "0",
             "--num-new-negatives", "2", "--save-embeddings", emb, "--threads", "2"])
    said = f'mine: prompts of config_sentence_transformers.json: queries "{pq}", documents "{pd}"'
    assert (said in r.stderr) == bool(prompts), r.stderr
    with open(os.path.join(out, "triples.train.colbert.jsonl")) as f:
        trip = [json.loads(line) for line in f]
    assert len(trip) >= len(recs), r.stderr
    with open(os.path.join(out, "queries.train.colbert.tsv"), encoding="utf-8") as f:
        qs = [line.rstrip("\n").split("\t", 1)[1] for line in f]
    assert qs == [p[0] for p in recs]   # the texts came through unchanged
    with open(os.path.join(out, "corpus.train.colbert.tsv"), encoding="utf-8") as f:
        ds = [line.rstrip("\n").split("\t", 1)[1] for line in f]   # the collection, in a seeded order
    assert sorted(ds) == sorted(p[1] for p in recs)

    def unit(x):
        return x / np.linalg.norm(x, axis=1, keepdims=True)
    for name, texts, call in (("queries", qs, call_q), ("docs", ds, call_d)):
        ours, want = np.load(os.path.join(emb, f"{name}.npy")), unit(st_embed(model, texts, call))
        diff = np.abs(ours - want).max()
        print(f"\nmining {name} (prompts {prompts}): {len(texts)} French/German texts, max abs diff {diff:.3g} "
              f"from sentence-transformers' {call})")
        assert diff <= TOL
        if prompts:   # the prompts change the embeddings
            plain = unit(st_embed(os.path.join(REF, "xlmr_model"), texts))
            assert np.abs(ours - plain).max() > 100 * TOL


@pytest.mark.parametrize("cfg, msg", [
    ({"prompts": ["query: "]}, 'key "prompts" must be an object of strings'),
    ({"prompts": {"query": 3}}, 'prompt "query" must be a string'),
    ({"prompts": {"query": "q: "}, "default_prompt_name": "passage"},
     'default_prompt_name "passage" is not among the prompts'),
])
def test_mining_bad_prompts(cfg, msg):
    model = prompt_model("family_bad_prompts", cfg)
    inp = os.path.join(TMP, "family_pairs_bad.jsonl")
    with open(inp, "w", encoding="utf-8") as f:
        for rec in pairs():
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")
    r = subprocess.run([BIN, "prepare", "--train-data", inp, "--out", os.path.join(TMP, "family_bad_out"),
                        "--miner-model", model, "--threads", "2", "--quiet"], capture_output=True, text=True)
    assert r.returncode != 0 and msg in r.stderr and "config_sentence_transformers.json" in r.stderr, r.stderr


# `--language` alone picks the reference's dense model for the language
# (fr: Solon, any other: multilingual-e5, both XLM-RoBERTa) from the local
# Hugging Face cache. The cache here is made in the test: the small XLM-R
# sentence-transformers directory under those two hub ids (e5's with its
# "query: " / "passage: " prompts). A run that names the language mines
# exactly what `--miner-model` on the same directory mines.
LANG_MODELS = {"fr": ("OrdalieTech/Solon-embeddings-base-0.1", None),
               "de": ("intfloat/multilingual-e5-small", PROMPTS["e5"][0]),
               "ja": ("intfloat/multilingual-e5-small", PROMPTS["e5"][0])}


def lang_hub():
    """$HF_HUB_CACHE with the languages' models; (cache, {hub id: snapshot})."""
    hub = os.path.join(TMP, "family_hub")
    xlmr = os.path.join(REF, "xlmr_model")
    return hub, hub_cache(hub, {name: (xlmr, cfg) for name, cfg in LANG_MODELS.values()})


NAMES = ("queries.train.colbert.tsv", "corpus.train.colbert.tsv", "triples.train.colbert.jsonl")


@pytest.mark.parametrize("lang", list(LANG_MODELS))
def test_language_picks_the_multilingual_miner(lang):
    hub, snaps = lang_hub()
    name = LANG_MODELS[lang][0]
    inp = os.path.join(TMP, "family_pairs_lang.jsonl")
    with open(inp, "w", encoding="utf-8") as f:
        for rec in pairs():
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")
    env = dict(os.environ, HF_HUB_CACHE=hub)
    by_lang, by_dir = os.path.join(TMP, f"family_lang_{lang}"), os.path.join(TMP, f"family_lang_{lang}_dir")
    common = ["--train-data", inp, "--hard-negative-min-rank", "0", "--num-new-negatives", "2", "--threads", "2"]
    r = run(["prepare"] + common + ["--out", by_lang, "--language", lang], env=env)
    assert name in r.stderr, r.stderr   # the run names the model it mines with
    assert ("prompts of config_sentence_transformers.json" in r.stderr) == (LANG_MODELS[lang][1] is not None)
    run(["prepare"] + common + ["--out", by_dir, "--miner-model", snaps[name]])
    for n in NAMES:
        with open(os.path.join(by_lang, n), "rb") as a, open(os.path.join(by_dir, n), "rb") as b:
            assert a.read() == b.read(), n
    with open(os.path.join(by_lang, NAMES[2])) as f:
        assert sum(1 for _ in f) >= len(pairs())
