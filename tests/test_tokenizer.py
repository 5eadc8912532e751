"""Tokenizer parity: `colbert tokenize` against Hugging Face `tokenizers`.

Every query and every document (title and text, each one line) of the
datasets in $COLBERT_DATASETS, a torture list (accents, CJK, emoji, control
and zero-width characters, combining marks, invalid UTF-8, long words...),
the vocab.txt fallback with several tokenizer_config.json options, and every
Unicode code point: the ids must be identical. The reference ids are computed
here, by `tokenizers`, from the same files. The same for the Unigram and
byte-level BPE tokenizers tests/ref/gen_tokenizers.py makes (XLM-R,
`tokenizers` Unigram, RoBERTa, ModernBERT shapes), with and without the
post-processor's special tokens, and the error a tokenizer.json with an
unsupported component gives.

Environment (tests/run.sh): COLBERT_BIN, COLBERT_SAN_BIN, COLBERT_MODEL,
COLBERT_DATASETS, COLBERT_TMP, COLBERT_REF.
"""
import json
import os
import shutil
import subprocess

import pytest
from tokenizers import Tokenizer


def env(name):
    v = os.environ.get(name)
    if not v:
        pytest.fail(f"environment variable {name} is not set (run the tests with `make test`)")
    return v


BIN = env("COLBERT_BIN")
SAN_BIN = env("COLBERT_SAN_BIN")
MODEL = env("COLBERT_MODEL")
DATASETS = env("COLBERT_DATASETS")
TMP = env("COLBERT_TMP")
REF = env("COLBERT_REF")

# ---------------------------------------------------------------------------
# Torture list. str entries are written UTF-8 encoded; bytes entries are
# written raw (invalid UTF-8) and decoded with errors="replace" for HF.
TORTURE = [
    "",
    " ",
    "   leading and trailing spaces   ",
    "Hello, World!",
    "UPPER lower MiXeD CaSe",
    "café naïve résumé façade coöperate Ångström",
    "Crème brûlée à la française, señor, São Paulo, Zürich, Øresund, Łódź",
    "e\u0301 a\u0300 o\u0308 n\u0303 combining: c\u0327a\u030a",
    "a\u0301\u0316\u0300 stacked marks a\u0316\u0301 reorder",
    "Z\u0351\u036b\u0343\u036a\u0302\u036b\u033d\u034f\u0334\u0319\u0324\u031e\u0349\u035a\u032f\u031e\u0320\u034dA\u036b\u0357\u0334\u0362\u0335\u031c\u0330\u0354L\u0368\u0367\u0369\u0358\u0320G\u0311\u0357\u030e\u0305\u035b\u0341\u0334\u033b\u0348\u034d\u0354\u0339O\u0342\u030c\u030c\u0358\u0328\u0335\u0339\u033b\u031d\u0333 zalgo",
    "İstanbul İ i̇ ı I DİYARBAKIR",
    "Straße STRASSE ß ẞ groß",
    "ΟΔΥΣΣΕΥΣ Σίσυφος ς σ Σ final sigma ΣΑΣ",
    "Ελληνικά: άέήίόύώ ΐΰ ϊϋ",
    "Русский текст: Ёжик в тумане, ЙОД",
    "中文测试：我爱北京天安门。",
    "日本語のテキスト、カタカナとひらがな。漢字",
    "한국어 텍스트 안녕하세요 ㄱㄴㄷ",
    "Mixed中文and English混合text",
    "CJK ext B: \U00020000\U0002A6D6 ext E: \U0002B820 compat: \uF900\uFA6D \U0002F800",
    "emoji 😀😃👍🏽 👨‍👩‍👧‍👦 🇫🇷 ❤️ ☃ 🤖",
    "zero\u200bwidth\u200cnon\u200djoiner\u2060word\ufeffbom",
    "soft\u00adhyphen and LRM\u200emark RLM\u200f and \u202aembedding\u202c",
    "controls \x01\x02\x03\x07\x08\x0b\x0c\x0e\x1b\x1f\x7f end",
    "C1 controls \x80\x85\x9f and NEL\x85inside",
    "tabs\tand\tspaces\t\t and \r carriage returns inside",
    "nbsp\u00a0here ideographic\u3000space em\u2003space thin\u2009space narrow\u202fnbsp",
    "line\u2028separator paragraph\u2029separator ogham\u1680space mongolian\u180evowel",
    "full-width: ＡＢＣ ａｂｃ １２３ ！？ （括弧） ＠＃＄",
    "half-width katakana ｶﾀｶﾅ and ligatures ﬁ ﬂ ﬀ Ǆ ǅ ǆ Ⅻ ⅻ ℌ ℍ",
    "punctuation: «quotes» “double” ‘single’ — – … ¿¡ § ¶ † ‡ • ‰ ′ ″ ‹›",
    "ascii punct: !\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~",
    "symbols: $ € £ ¥ ₹ © ® ™ ° ± × ÷ ∞ ≈ ≠ ≤ ≥ √ ∑ ∫ → ⇒ ♠ ♥",
    "math: α+β=γ, ∀x∈ℝ: x²≥0, H₂O, E=mc², ½ ¼ ¾",
    "arabic: مرحبا بالعالم، كيف حالك؟ hebrew: שלום עולם",
    "devanagari: नमस्ते दुनिया thai: สวัสดีชาวโลก",
    "private use \ue000\uf8ff and \U000F0000 plane 15",
    "noncharacters \ufdd0 \ufffe \uffff and replacement \ufffd char",
    "special tokens [CLS] [SEP] [PAD] [MASK] [UNK] inside text",
    "[CLS][SEP]glued[MASK]tokens[UNK]",
    "[cls] lowercase specials are not special, [ CLS ] neither, [CLS",
    "[unused0] [unused1] [unused99]",
    "a" * 100,
    "b" * 101,
    "é" * 100 + " " + "é" * 101,
    "supercalifragilisticexpialidocious" * 3 + " short",
    "x" * 5000,
    "antidisestablishmentarianism pneumonoultramicroscopicsilicovolcanoconiosis",
    "numbers 1234567890 3.14159 1,000,000 -42 +7 1e-10 0x1F 50% #1",
    "urls https://example.com/path?q=1&r=2#frag user@example.org",
    "code: int main(void) { return 0; } // comment /* block */",
    "hyphen-ated words, under_scores, CamelCaseWords and snake_case_words",
    "apostrophes: don't won't it's o'clock rock'n'roll",
    "1st 2nd 3rd 4th COVID-19 SARS-CoV-2 IL-6 TNF-α β-catenin p53 Ca²⁺",
    "Vitamin D₃ (cholecalciferol) 25(OH)D ≥ 30 ng/mL; p<0.001; n=1,234",
    "NUL byte \x00 inside",
    "variation selectors ︎ ︀ \U000E0100 tags \U000E0041\U000E0042",
    "surrogate-like text \\ud800 and escapes \\n \\t",
    "Åström Ærø Œuvre Ðð Þþ ǅ Ǉ ǈ",
    "vietnamese: Tiếng Việt có dấu, Nguyễn, Đặng",
    "Ǻ ǻ Ḁ ḁ ẞ ỹ Ỹ ‿ ⁀",
    "dotless ı and dotted İ in words: İİİ ıııı",
    "Ⓐⓑⓒ ①②③ ㈱ ㍿ ℡ ℀",
    "musical 𝄞 𝅘𝅥𝅮 𝅗𝅥 𝅘𝅥𝅯 combining 𝅥𝅲 and math 𝐀𝐁𝐂 𝔸𝔹",
    b"invalid utf-8: \xff\xfe end",
    b"truncated \xe2\x82 then ascii A\xe2\x82A",
    b"lone continuation \x80\x81\xbf bytes",
    b"overlong \xc0\xaf \xe0\x80\xaf \xf0\x80\x80\xaf",
    b"surrogates \xed\xa0\x80 \xed\xbf\xbf encoded",
    b"beyond U+10FFFF \xf4\x90\x80\x80 and \xf5\x80\x80\x80",
    b"mixed valid \xc3\xa9 and invalid \xc3 \xc3\x28 caf\xe9",
    b"\xe4\xb8\xad\xe6\x96 truncated CJK",
    b"word\xffglued\xfeto\xc0gether",
    b"[CLS]\xff[SEP]\xe2\x82[MASK]",
    b"ends with a truncated sequence \xf0\x9f\x98",
    # for the Unigram and BPE tokenizers: their specials, runs of spaces,
    # contractions (GPT-2's split), sentencepiece's normalization
    "<s> <pad> </s> <unk> <mask> inside text<mask>glued  <mask>  and <s>",
    "[MASK] lstrip   [MASK]x [CLS][SEP] |||IP_ADDRESS||| and |||EMAIL_ADDRESS|||",
    "runs of spaces:  2   3    4     5      6       7        8                         25 end",
    "   leading spaces and trailing   ",
    "\u00a0\u00a0nbsp run\u3000\u3000ideographic\u2003\u2003em",
    "contractions: I'm you're we've she'll he'd it's don't 'S 'RE Tim's ''quoted'' ``tex``",
    "curly ’s and ‘quotes’ — dashes – and …",
    "digits 12345678901234567890 3.14 1,000 ①②③ ¹²³ ٣٤٥ 四五",
    "▁ lower one eighth block ▁▁ twice ▁x",
    "tab\tnewline-free\x0bvertical\x0cform feed",
    "ﬁnancial ﬂow Ⅸ ㎏ ㍻ ½ ﬀ",
]


def write_lines(path, lines):
    """Write str/bytes lines, one per line; return the texts as HF sees them."""
    texts = []
    with open(path, "wb") as f:
        for x in lines:
            b = x if isinstance(x, bytes) else x.encode("utf-8")
            assert b"\n" not in b and not b.endswith(b"\r")
            f.write(b + b"\n")
            texts.append(b.decode("utf-8", errors="replace"))
    return texts


def colbert_tokenize(binary, model, path, special=False):
    r = subprocess.run([binary, "tokenize", "--model", model, path] + (["--special"] if special else []),
                       capture_output=True)
    assert r.returncode == 0, f"{binary} tokenize failed ({r.returncode}): {r.stderr.decode(errors='replace')}"
    out = r.stdout.decode("ascii").split("\n")
    assert out[-1] == ""
    return [[int(x) for x in line.split()] for line in out[:-1]]


def hf_tokenizer(path):
    tok = Tokenizer.from_file(path)
    tok.no_truncation()
    tok.no_padding()
    return tok


def hf_ids(tok, texts):
    return [e.ids for e in tok.encode_batch(texts, add_special_tokens=False)]


def say(capsys, msg):
    """Print past pytest's capture: the counts belong in the test log."""
    with capsys.disabled():
        print("\n" + msg, flush=True)


def compare(capsys, name, texts, ours, ref):
    assert len(ours) == len(texts), f"{name}: {len(ours)} output lines for {len(texts)} texts"
    bad = [i for i in range(len(texts)) if ours[i] != ref[i]]
    for i in bad[:5]:
        print(f"{name}: text {i} differs: {texts[i][:200]!r}\n  ours {ours[i][:40]}\n  hf   {ref[i][:40]}")
    say(capsys, f"{name}: {len(texts) - len(bad)}/{len(texts)} texts with identical ids")
    assert not bad, f"{name}: {len(bad)} of {len(texts)} texts differ"


def dataset_texts():
    texts = []
    for ds in ("nfcorpus", "scifact"):
        d = os.path.join(DATASETS, ds)
        with open(os.path.join(d, "queries.jsonl"), encoding="utf-8") as f:
            for line in f:
                texts.append(json.loads(line)["text"])
        with open(os.path.join(d, "corpus.jsonl"), encoding="utf-8") as f:
            for line in f:
                doc = json.loads(line)
                texts.append(doc.get("title") or "")
                texts.append(doc["text"])
    # One text a line: newlines inside texts become spaces on both sides.
    return [t.replace("\r", " ").replace("\n", " ") for t in texts]


@pytest.fixture(scope="module")
def hf():
    return hf_tokenizer(os.path.join(MODEL, "tokenizer.json"))


def test_datasets_parity(hf, capsys):
    texts = dataset_texts()
    assert len(texts) > 20000
    path = os.path.join(TMP, "tok_datasets.txt")
    write_lines(path, texts)
    compare(capsys, "datasets (nfcorpus + scifact queries, titles, texts)", texts,
            colbert_tokenize(BIN, MODEL, path), hf_ids(hf, texts))


def test_torture_parity(hf, capsys):
    path = os.path.join(TMP, "tok_torture.txt")
    texts = write_lines(path, TORTURE)
    ours = colbert_tokenize(BIN, MODEL, path)
    compare(capsys, "torture list", texts, ours, hf_ids(hf, texts))
    # The list must exercise the hard paths, not only pass through them.
    unk = hf.token_to_id("[UNK]")
    assert sum(unk in ids for ids in ours) >= 5
    assert any(hf.token_to_id("[MASK]") in ids for ids in ours)


def test_torture_asan():
    path = os.path.join(TMP, "tok_torture_san.txt")
    write_lines(path, TORTURE)
    assert colbert_tokenize(SAN_BIN, MODEL, path) == colbert_tokenize(BIN, MODEL, path)


def test_stdin_and_crlf():
    data = "Hello World\r\nsecond line\n\nno newline at end".encode()
    r = subprocess.run([BIN, "tokenize", "--model", MODEL], input=data, capture_output=True)
    assert r.returncode == 0, r.stderr
    r2 = subprocess.run([BIN, "tokenize", "--model", MODEL, "-"], input=data, capture_output=True)
    assert r2.stdout == r.stdout
    lines = r.stdout.decode().split("\n")
    assert len(lines) == 5 and lines[2] == "" and lines[4] == ""
    assert lines[0] == "7592 2088"


def test_cli_usage():
    r = subprocess.run([BIN, "tokenize", "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "usage: colbert tokenize" in r.stdout
    assert subprocess.run([BIN, "tokenize"], capture_output=True).returncode == 2
    assert subprocess.run([BIN, "tokenize", "--model", MODEL, "--bogus"], capture_output=True).returncode == 2
    missing = os.path.join(TMP, "no-such-model-dir")
    r = subprocess.run([BIN, "tokenize", "--model", missing], capture_output=True, text=True, input="")
    assert r.returncode == 1
    assert r.stderr.startswith("colbert: error:") and "no-such-model-dir" in r.stderr
    assert len(r.stderr.strip().split("\n")) == 1
    r = subprocess.run([BIN, "tokenize", "--model", MODEL, os.path.join(TMP, "no-such-file.txt")],
                       capture_output=True, text=True)
    assert r.returncode == 1 and "no-such-file.txt" in r.stderr


# ---------------------------------------------------------------------------
# vocab.txt + tokenizer_config.json fallback (no tokenizer.json).
FALLBACK_CONFIGS = [
    ("as shipped", None),
    ("cased", {"do_lower_case": False}),
    ("cased, strip accents", {"do_lower_case": False, "strip_accents": True}),
    ("lowercase, keep accents", {"do_lower_case": True, "strip_accents": False}),
    ("no chinese split", {"tokenize_chinese_chars": False}),
]


@pytest.mark.parametrize("name,override", FALLBACK_CONFIGS, ids=[c[0] for c in FALLBACK_CONFIGS])
def test_vocab_txt_fallback(name, override, capsys):
    from tokenizers.implementations import BertWordPieceTokenizer

    d = os.path.join(TMP, "fallback-" + name.replace(" ", "_").replace(",", ""))
    os.makedirs(d, exist_ok=True)
    shutil.copy(os.path.join(MODEL, "vocab.txt"), d)
    with open(os.path.join(MODEL, "tokenizer_config.json"), encoding="utf-8") as f:
        cfg = json.load(f)
    cfg.update(override or {})
    with open(os.path.join(d, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump(cfg, f)
    assert not os.path.exists(os.path.join(d, "tokenizer.json"))

    # What transformers builds from these files (BertTokenizerFast).
    ref = BertWordPieceTokenizer(
        os.path.join(d, "vocab.txt"),
        clean_text=True,
        handle_chinese_chars=cfg.get("tokenize_chinese_chars", True),
        strip_accents=cfg.get("strip_accents"),
        lowercase=cfg.get("do_lower_case", True),
        wordpieces_prefix="##",
    )
    ds = dataset_texts()
    texts_in = TORTURE + ds[::40]
    path = os.path.join(TMP, f"tok_fallback_{abs(hash(name))}.txt")
    texts = write_lines(path, texts_in)
    ours = colbert_tokenize(BIN, d, path)
    ref_ids = [e.ids for e in ref.encode_batch(texts, add_special_tokens=False)]
    compare(capsys, f"vocab.txt fallback ({name})", texts, ours, ref_ids)


# ---------------------------------------------------------------------------
# Every code point (of the planes in use), through a vocabulary that holds every single character
# (and its ## form), so that normalization and splitting show in the ids
# instead of hiding behind [UNK].
#
# HF takes categories (control, punctuation, Mn) from the Rust crate
# unicode_categories, whose tables are from an old Unicode version, and
# lowercase from Rust's char (a newer one); utf8proc has its own version.
# Characters assigned or re-categorized between those versions differ (about
# 600 of the 330,000 tested, in recently encoded scripts and signs). The test
# allows those few, but in the ranges of the scripts in daily use only the
# handful of signs added to them since (at most 40; 20 today).
COMMON_RANGES = [
    (0x0000, 0x05FF),    # Latin, IPA, Greek, Cyrillic, Armenian, Hebrew
    (0x0900, 0x0DFF),    # Indic scripts (a few new signs excepted below)
    (0x0E00, 0x0EFF),    # Thai, Lao
    (0x1E00, 0x2E3F),    # Latin extended additional, Greek extended, punctuation, symbols
    (0x3000, 0x9FFF),    # CJK symbols, kana, Hangul compatibility, CJK ideographs
    (0xAC00, 0xD7A3),    # Hangul syllables
    (0xF900, 0xFFFF),    # compatibility ideographs, presentation forms, full-width
    (0x1F300, 0x1FAFF),  # emoji
]


def _in_common(cp):
    return any(a <= cp <= b for a, b in COMMON_RANGES)


@pytest.mark.parametrize("strip", [None, False], ids=["strip_accents=null", "strip_accents=false"])
def test_every_code_point(strip, capsys):
    with open(os.path.join(MODEL, "tokenizer.json"), encoding="utf-8") as f:
        spec = json.load(f)
    # Planes 0-3 and 14 whole; planes 4-13 are unassigned (no Unicode version
    # has put anything there), planes 15-16 are private use: sampled.
    cps = [cp for cp in range(1, 0x40000) if not (0xD800 <= cp < 0xE000) and cp != 10]
    cps += list(range(0xE0000, 0xF0000)) + list(range(0xF0000, 0x110000, 61)) + list(range(0x40000, 0xE0000, 997))
    vocab = {"[UNK]": 0}
    for cp in cps:
        vocab[chr(cp)] = len(vocab)
        vocab["##" + chr(cp)] = len(vocab)
    for c in ("i\u0307", "##i\u0307"):  # U+0130 lowercases to two chars
        vocab[c] = len(vocab)
    spec["model"]["vocab"] = vocab
    spec["added_tokens"] = []
    spec["truncation"] = spec["padding"] = spec["post_processor"] = None
    spec["normalizer"]["strip_accents"] = strip
    d = os.path.join(TMP, f"every-cp-{strip}")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(spec, f, ensure_ascii=False)
    lines = [f"a{chr(cp)}a {chr(cp)}." for cp in cps]
    path = os.path.join(d, "lines.txt")
    texts = write_lines(path, lines)
    ours = colbert_tokenize(BIN, d, path)
    ref = hf_ids(hf_tokenizer(os.path.join(d, "tokenizer.json")), texts)
    assert len(ours) == len(ref)
    bad = [cps[i] for i in range(len(cps)) if ours[i] != ref[i]]
    common = [cp for cp in bad if _in_common(cp)]
    say(capsys, f"every code point ({strip=}): {len(cps) - len(bad)}/{len(cps)} identical; "
          f"{len(bad)} differ (Unicode version of HF's tables), {len(common)} of them in common ranges: "
          + " ".join(f"U+{cp:04X}" for cp in common))
    assert len(bad) <= 1000
    # In common ranges only characters added or re-categorized after Unicode 8.
    assert len(common) <= 40, [hex(c) for c in common]


def test_added_token_options(capsys):
    """Added tokens with the other flags: normalized (matched after the
    normalizer), lstrip/rstrip (take the spaces around), single_word."""
    with open(os.path.join(MODEL, "tokenizer.json"), encoding="utf-8") as f:
        spec = json.load(f)
    n = len(spec["model"]["vocab"])
    extra = [
        {"content": "<Foo Bar>", "normalized": True, "special": False},
        {"content": "[STRIP]", "lstrip": True, "rstrip": True, "normalized": False, "special": True},
        {"content": "qux", "single_word": True, "normalized": False, "special": False},
        {"content": "Ünï", "normalized": True, "special": False},
        {"content": "[CLS]x", "normalized": False, "special": True},
    ]
    for i, tok in enumerate(extra):
        tok.update({"id": n + i, "single_word": tok.get("single_word", False),
                    "lstrip": tok.get("lstrip", False), "rstrip": tok.get("rstrip", False)})
    spec["added_tokens"] += extra
    d = os.path.join(TMP, "added-options")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(spec, f, ensure_ascii=False)
    lines = [
        "a <foo bar> b <FOO BAR> c <Foo  Bar> <Foo\tBar>",
        "x   [STRIP]   y [STRIP][STRIP] z[STRIP]w",
        "qux quxx xqux (qux) qux. a qux",
        "UNI uni ünï ÜNÏ unïcode",
        "[CLS]x [CLS] x [CLS][CLS]xx",
    ] + TORTURE
    path = os.path.join(d, "lines.txt")
    texts = write_lines(path, lines)
    ours = colbert_tokenize(BIN, d, path)
    compare(capsys, "added token options", texts, ours, hf_ids(hf_tokenizer(os.path.join(d, "tokenizer.json")), texts))
    seen = {i for ids in ours for i in ids}
    assert all(n + i in seen for i in range(len(extra))), "every added token must be matched somewhere"


# ---------------------------------------------------------------------------
# Unigram and byte-level BPE tokenizers (tests/ref/gen_tokenizers.py).
FAMILIES = ["xlmr", "xlmr-ws", "xlmr-first", "unigram", "roberta", "roberta-str", "modernbert",
            "modernbert-split"]
# XLM-R and RoBERTa get every dataset text (21,000 lines), the others a sample
FULL = {"xlmr", "roberta"}


def family_dir(name):
    d = os.path.join(REF, "tokenizers", name)
    assert os.path.isfile(os.path.join(d, "tokenizer.json")), f"{d}: run tests/ref/gen_tokenizers.py first"
    return d


@pytest.fixture(scope="module")
def family_texts():
    path = os.path.join(TMP, "tok_family.txt")
    ds = dataset_texts()
    texts = write_lines(path, TORTURE + ds)
    path_s = os.path.join(TMP, "tok_family_sample.txt")
    texts_s = write_lines(path_s, TORTURE + ds[::7])
    return {True: (path, texts), False: (path_s, texts_s)}


@pytest.mark.parametrize("name", FAMILIES)
def test_family_parity(name, family_texts, capsys):
    d = family_dir(name)
    path, texts = family_texts[name in FULL]
    hf = hf_tokenizer(os.path.join(d, "tokenizer.json"))
    ours = colbert_tokenize(BIN, d, path)
    compare(capsys, f"{name} ({hf.model.__class__.__name__})", texts, ours, hf_ids(hf, texts))
    # the hard paths are taken: unknown pieces (Unigram), byte tokens, added tokens
    n_tor = len(TORTURE)
    added = {hf.token_to_id(t) for t in ("<mask>", "[MASK]", "<s>", "|||IP_ADDRESS|||") if hf.token_to_id(t) is not None}
    assert any(set(ids) & added for ids in ours[:n_tor]), "no added token met in the torture list"
    if name.startswith("xlmr"):
        assert sum(3 in ids for ids in ours) >= 5   # <unk>
    if name == "unigram":
        assert any(hf.token_to_id("<0xF0>") in ids for ids in ours[:n_tor])   # byte fallback of an emoji


@pytest.mark.parametrize("name", FAMILIES)
def test_family_special_tokens(name, family_texts, capsys):
    """--special: the post-processor's template around the ids, as
    encode(text, add_special_tokens=True)."""
    d = family_dir(name)
    path, texts = family_texts[False]
    hf = hf_tokenizer(os.path.join(d, "tokenizer.json"))
    ref = [e.ids for e in hf.encode_batch(texts, add_special_tokens=True)]
    compare(capsys, f"{name} with special tokens", texts, colbert_tokenize(BIN, d, path, special=True), ref)
    assert ref[0] and ref[0] != hf.encode(texts[0], add_special_tokens=False).ids


def test_bert_special_tokens():
    path = os.path.join(TMP, "tok_bert_special.txt")
    texts = write_lines(path, TORTURE[:20])
    ref = [e.ids for e in hf_tokenizer(os.path.join(MODEL, "tokenizer.json")).encode_batch(texts)]
    assert colbert_tokenize(BIN, MODEL, path, special=True) == ref
    assert all(r[0] == 101 and r[-1] == 102 for r in ref)


@pytest.mark.parametrize("name", FAMILIES)
def test_family_asan(name):
    d = family_dir(name)
    path = os.path.join(TMP, "tok_family_torture.txt")
    write_lines(path, TORTURE)
    assert colbert_tokenize(SAN_BIN, d, path, special=True) == colbert_tokenize(BIN, d, path, special=True)


# (what to change in xlmr's tokenizer.json, what the error must say)
UNSUPPORTED = [
    (lambda j: j["normalizer"]["normalizers"].append({"type": "StripAccents"}),
     "normalizer type 'StripAccents' is not supported"),
    (lambda j: j.update(pre_tokenizer={"type": "Digits", "individual_digits": True}),
     "pre_tokenizer type 'Digits' is not supported"),
    (lambda j: j.update(post_processor={"type": "Fancy"}), "post_processor type 'Fancy' is not supported"),
    (lambda j: j["model"].update(type="WordLevel"), "model type 'WordLevel' is not supported"),
    (lambda j: j["normalizer"]["normalizers"].append(
        {"type": "Replace", "pattern": {"Regex": "(?i:ab)"}, "content": ""}),
     "normalizer Replace: regex pattern '(?i:ab)' is not supported: it uses a group"),
    (lambda j: j.update(pre_tokenizer={"type": "Split", "pattern": {"Regex": "\\p{L}+"}, "behavior": "Isolated"}),
     "pre_tokenizer Split: regex pattern '\\p{L}+' is not supported"),
    (lambda j: j["model"].update(unk_id=None), "a Unigram model without an unknown token is not supported"),
    (lambda j: j["normalizer"]["normalizers"][0].update(precompiled_charsmap="AAAA"),
     "normalizer Precompiled: the charsmap is malformed"),
]


@pytest.mark.parametrize("i", range(len(UNSUPPORTED)))
def test_unsupported_component(i):
    change, want = UNSUPPORTED[i]
    with open(os.path.join(family_dir("xlmr"), "tokenizer.json"), encoding="utf-8") as f:
        spec = json.load(f)
    change(spec)
    d = os.path.join(TMP, f"tok-unsupported-{i}")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(spec, f, ensure_ascii=False)
    for binary in (BIN, SAN_BIN):
        r = subprocess.run([binary, "tokenize", "--model", d], input=b"hello\n", capture_output=True)
        err = r.stderr.decode()
        assert r.returncode == 1, (r.returncode, err)
        assert err.startswith("colbert: error: " + os.path.join(d, "tokenizer.json") + ": "), err
        assert want in err and len(err.strip().split("\n")) == 1, err


# Each supported normalizer and pre-tokenizer (and the regex subset) in
# turn, in front of the RoBERTa fixture's byte-level BPE (which has a piece
# for every byte, so that every difference shows in the ids).
def _bl(**kw):
    return dict({"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}, **kw)


def _split(pattern, behavior, invert=False):
    return {"type": "Split", "pattern": pattern, "behavior": behavior, "invert": invert}


NORMALIZER_VARIANTS = {
    "NFD": {"type": "NFD"}, "NFKD": {"type": "NFKD"}, "NFC": {"type": "NFC"}, "NFKC": {"type": "NFKC"},
    "Lowercase": {"type": "Lowercase"}, "Nmt": {"type": "Nmt"},
    "Strip": {"type": "Strip", "strip_left": True, "strip_right": True},
    "Prepend": {"type": "Prepend", "prepend": "\u2581"},
    "Replace-string": {"type": "Replace", "pattern": {"String": "the"}, "content": "THE"},
    "Replace-regex-ws": {"type": "Replace", "pattern": {"Regex": "\\s+"}, "content": " "},
    "Replace-regex-set": {"type": "Replace", "pattern": {"Regex": "[aeiouA-C]{2,3}|x?y+"}, "content": "_"},
    "Replace-regex-anchors": {"type": "Replace", "pattern": {"Regex": "\\A +| +\\z"}, "content": ""},
    "Replace-regex-dot": {"type": "Replace", "pattern": {"Regex": "e.e|[^a-z ]\\S"}, "content": "#"},
    "Sequence": {"type": "Sequence", "normalizers": [{"type": "NFKD"}, {"type": "Lowercase"},
                                                     {"type": "Replace", "pattern": {"Regex": " {2,}"}, "content": " "}]},
}
PRETOK_VARIANTS = {
    "WhitespaceSplit": [{"type": "WhitespaceSplit"}, _bl()],
    "ByteLevel-prefix": [_bl(add_prefix_space=True, use_regex=True)],
    "Metaspace": [{"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "first", "split": True}, _bl()],
    "Split-digits": [_split({"Regex": "[0-9]+"}, "Isolated"), _bl(use_regex=True)],
    "Split-regex-contiguous": [_split({"Regex": "\\s"}, "Contiguous"), _bl()],
}
for _b in ("Removed", "Isolated", "MergedWithPrevious", "MergedWithNext", "Contiguous"):
    for _inv in (False, True):
        PRETOK_VARIANTS[f"Split-{_b}{'-invert' if _inv else ''}"] = [_split({"String": " "}, _b, _inv), _bl()]


@pytest.mark.parametrize("kind,name", [("normalizer", n) for n in NORMALIZER_VARIANTS] +
                         [("pre_tokenizer", n) for n in PRETOK_VARIANTS])
def test_component_variants(kind, name, family_texts):
    with open(os.path.join(family_dir("roberta"), "tokenizer.json"), encoding="utf-8") as f:
        spec = json.load(f)
    if kind == "normalizer":
        spec["normalizer"] = NORMALIZER_VARIANTS[name]
    else:
        spec["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": PRETOK_VARIANTS[name]}
    d = os.path.join(TMP, f"tok-variant-{kind}-{name}")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(spec, f, ensure_ascii=False)
    path = os.path.join(TMP, "tok_variant.txt")
    texts = write_lines(path, TORTURE + dataset_texts()[::60])
    hf = hf_tokenizer(os.path.join(d, "tokenizer.json"))
    ours = colbert_tokenize(BIN, d, path)
    ref = hf_ids(hf, texts)
    bad = [i for i in range(len(texts)) if ours[i] != ref[i]]
    for i in bad[:3]:
        print(f"{name}: {texts[i][:100]!r}\n  ours {ours[i][:30]}\n  hf   {ref[i][:30]}")
    assert not bad, f"{kind} {name}: {len(bad)} of {len(texts)} texts differ"
