"""test_cli.py: the command line itself, no model or data needed.

Every command answers -h/--help on stdout with exit status 0. Every usage
error (unknown option, missing or empty value, malformed or out-of-range
number, unknown choice, unexpected argument, missing required option) exits
with status 2, prints nothing on stdout and exactly two stderr lines:

    colbert <cmd>: error: <what>
    Try 'colbert <cmd> --help'.

Runtime errors (files, models) are "colbert: error: <message>", status 1.
Each case runs on the release build ($COLBERT_BIN) and on the ASan/UBSan
build ($COLBERT_SAN_BIN), so no sanitizer report may appear either.
"""
import os
import re
import subprocess

import pytest

BIN = os.environ["COLBERT_BIN"]
SAN_BIN = os.environ["COLBERT_SAN_BIN"]
TMP = os.environ.get("COLBERT_TMP", "/tmp")
BINARIES = pytest.mark.parametrize("binary", [BIN, SAN_BIN], ids=["release", "asan"])
COMMANDS = ["tokenize", "encode", "prepare", "eval", "train", "info"]

# Options that pass the checks of each command, so that the error under test
# is the only one; nothing is loaded before the arguments are checked.
VALID = {
    "tokenize": ["--model", "m"],
    "encode": ["--model", "m", "--input", "in.txt", "--output", "out.npy"],
    "prepare": ["--beir", "d", "--out", "o"],
    "eval": ["--model", "m", "--dataset", "d"],
    "train": ["--model-name", "x", "--pretrained", "m", "--data", "d"],
    "info": [],
}


def run(binary, *args):
    assert os.path.exists(binary), f"{binary} is not built (make; make build-san/colbert)"
    env = dict(os.environ)
    env.setdefault("ASAN_OPTIONS", "detect_leaks=1")
    return subprocess.run([binary, *args], capture_output=True, text=True, env=env, timeout=120,
                          stdin=subprocess.DEVNULL)


def expect_usage(binary, cmd, args, *phrases):
    """`colbert cmd args` is a usage error whose message has every phrase."""
    p = run(binary, *([cmd] if cmd else []), *args)
    lines = p.stderr.splitlines()
    who = f"colbert {cmd}" if cmd else "colbert"
    assert p.returncode == 2, f"exit status {p.returncode} (expected 2), stderr:\n{p.stderr}"
    assert p.stdout == "", p.stdout
    assert len(lines) == 2, f"expected two stderr lines, got:\n{p.stderr}"
    assert lines[0].startswith(f"{who}: error: "), lines[0]
    assert lines[1] == f"Try '{who} --help'.", lines[1]
    for ph in phrases:
        assert ph in lines[0], f"{ph!r} not in: {lines[0]}"
    return lines[0]


# ---- --help, --version ---------------------------------------------------------

@BINARIES
@pytest.mark.parametrize("cmd", COMMANDS)
@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_help(binary, cmd, flag):
    p = run(binary, cmd, flag)
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith(f"usage: colbert {cmd}"), p.stdout
    assert "-h, --help" in p.stdout
    assert p.stderr == ""


@BINARIES
@pytest.mark.parametrize("cmd", COMMANDS)
def test_help_after_other_options(binary, cmd):
    p = run(binary, cmd, *VALID[cmd], "--help")
    assert p.returncode == 0 and p.stdout.startswith(f"usage: colbert {cmd}"), p.stderr


@BINARIES
def test_top_level(binary):
    p = run(binary, "--help")
    assert p.returncode == 0 and p.stdout.startswith("usage: colbert <command>") and p.stderr == ""
    for cmd in COMMANDS:
        assert f"\n  {cmd} " in p.stdout, cmd
    p = run(binary)
    assert p.returncode == 2 and p.stderr.startswith("usage: colbert <command>") and p.stdout == ""
    expect_usage(binary, None, ["bogus"], "unknown command 'bogus'")
    expect_usage(binary, None, ["--bogus"], "unknown option '--bogus'")
    expect_usage(binary, None, ["--version", "extra"], "unexpected argument 'extra'")


@BINARIES
@pytest.mark.parametrize("arg", ["--version", "version"])
def test_version(binary, arg):
    p = run(binary, arg)
    assert p.returncode == 0 and p.stderr == "", p.stderr
    assert re.fullmatch(r"colbert\.c \d+\.\d+\.\d+\n", p.stdout), p.stdout


# ---- unknown options -------------------------------------------------------------

@BINARIES
@pytest.mark.parametrize("cmd", COMMANDS)
def test_unknown_option_last(binary, cmd):
    """Given last, with no value after it: still an unknown option."""
    line = expect_usage(binary, cmd, [*VALID[cmd], "--bogus"], "unknown option '--bogus'")
    assert "value" not in line, line


@BINARIES
@pytest.mark.parametrize("cmd", COMMANDS)
def test_unknown_option_first(binary, cmd):
    expect_usage(binary, cmd, ["--bogus", "1", *VALID[cmd]], "unknown option '--bogus'")
    expect_usage(binary, cmd, ["--bogus=1", *VALID[cmd]], "unknown option '--bogus'")
    expect_usage(binary, cmd, ["-x", *VALID[cmd]], "unknown option '-x'")


@BINARIES
def test_abbreviation_is_unknown(binary):
    expect_usage(binary, "eval", ["--mod", "m", "--dataset", "d"], "unknown option '--mod'",
                 "did you mean '--model'?")
    expect_usage(binary, "prepare", ["--beir", "d", "--out", "o", "--miner"], "unknown option '--miner'")


@BINARIES
@pytest.mark.parametrize("cmd,flag", [("encode", "--quiet"), ("prepare", "--no-mining"), ("eval", "--quiet"),
                                      ("train", "--relu"), ("info", "--help")])
def test_flag_with_value(binary, cmd, flag):
    expect_usage(binary, cmd, [*VALID[cmd], f"{flag}=1"], f"option '{flag}' takes no value")


# ---- values ------------------------------------------------------------------------

@BINARIES
@pytest.mark.parametrize("cmd,opt", [("tokenize", "--model"), ("encode", "--threads"), ("prepare", "--out"),
                                     ("eval", "--depth"), ("train", "--lr")])
def test_missing_value(binary, cmd, opt):
    """The option is the last argument: its value is missing."""
    expect_usage(binary, cmd, [*VALID[cmd], opt], f"option '{opt}' needs a value")


@BINARIES
@pytest.mark.parametrize("cmd,opt", [("tokenize", "--model"), ("encode", "--output"), ("encode", "--threads"),
                                     ("prepare", "--train-data"), ("eval", "--dataset"), ("train", "--data"),
                                     ("train", "--batch-size")])
def test_empty_value(binary, cmd, opt):
    expect_usage(binary, cmd, [*VALID[cmd], opt, ""], f"option '{opt}' needs a value, found ''")
    expect_usage(binary, cmd, [*VALID[cmd], f"{opt}="], f"option '{opt}' needs a value, found ''")


MALFORMED = [
    ("encode", "--threads", "abc", "an integer in [1, 4096]"),
    ("encode", "--threads", "0", "an integer in [1, 4096]"),
    ("encode", "--threads", "99999999999999999999", "an integer in [1, 4096]"),
    ("encode", "--max-length", "-1", "an integer in [2, 1000000]"),
    ("encode", "--max-length", "12abc", "an integer in [2, 1000000]"),
    ("encode", "--max-length", " 12", "an integer in [2, 1000000]"),
    ("prepare", "--threads", "abc", "an integer in [1, 4096]"),
    ("prepare", "--num-new-negatives", "-1", "an integer in [0, 1000000]"),
    ("prepare", "--seed", "12abc", "an integer >= 0"),
    ("prepare", "--seed", "9223372036854775808", "an integer >= 0"),
    ("prepare", "--miner-nprobe", "0", "an integer in [1, 2147483647]"),
    ("prepare", "--hard-negative-min-rank", "1.5", "an integer in [0, 1000000]"),
    ("eval", "--threads", "abc", "an integer in [1, 4096]"),
    ("eval", "--depth", "0", "an integer in [1, 100000]"),
    ("eval", "--doc-maxlen", "1e3", "an integer in [3, 8192]"),
    ("eval", "--max-queries", "2147483648", "an integer in [1, 2147483647]"),
    ("eval", "--seed", "-1", "an integer >= 0"),
    ("train", "--threads", "abc", "an integer in [0, 4096]"),
    ("train", "--threads", "2.5", "an integer in [0, 4096]"),
    ("train", "--batch-size", "12abc", "an integer in [1, 65536]"),
    ("train", "--batch-size", "0", "an integer in [1, 65536]"),
    ("train", "--maxsteps", "99999999999999999999", "an integer in [1, 1000000000000000]"),
    ("train", "--gpus", "-2", "an integer in [-1, 1024]"),
    ("train", "--doc-maxlen", "-1", "an integer in [4, 1000000]"),
    ("train", "--keep-checkpoints", "two", "an integer in [0, 1000000]"),
    ("train", "--warmup", "-3", "an integer >= 0 or auto"),
    ("train", "--seed", "-1", "an integer in [0, 18446744073709551615]"),
    ("train", "--seed", "18446744073709551616", "an integer in [0, 18446744073709551615]"),
    ("train", "--lr", "abc", "a number in [1e-12, 1]"),
    ("train", "--lr", "nan", "a number in [1e-12, 1]"),
    ("train", "--lr", "inf", "a number in [1e-12, 1]"),
    ("train", "--lr", "1e-400", "a number in [1e-12, 1]"),
    ("train", "--val-fraction", "1", "a number in [0, 0.99]"),
    ("train", "--val-fraction", "0.5x", "a number in [0, 0.99]"),
]


@BINARIES
@pytest.mark.parametrize("cmd,opt,value,expected", MALFORMED, ids=[f"{c} {o} {v!r}" for c, o, v, _ in MALFORMED])
def test_malformed_number(binary, cmd, opt, value, expected):
    expect_usage(binary, cmd, [*VALID[cmd], opt, value], f"option '{opt}': expected {expected}, found '{value}'")
    expect_usage(binary, cmd, [f"{opt}={value}", *VALID[cmd]], f"option '{opt}': expected {expected}")


CHOICES = [
    ("encode", "--colbert", "passage", "query or doc"),
    ("prepare", "--kind", "quads", "auto, pairs, labeled or triplets"),
    ("prepare", "--miner-index", "hnsw", "auto, exact or ivf"),
    ("prepare", "--miner-size", "huge", "small, base or large"),
    ("train", "--loss", "mse", "colbert or contrastive"),
    ("train", "--warmup", "soon", "an integer >= 0 or auto"),
    ("encode", "--device", "gpu", "auto, cpu, cuda or cuda:N"),
    ("eval", "--device", "cuda:x", "auto, cpu, cuda or cuda:N"),
    ("prepare", "--device", "cuda:", "auto, cpu, cuda or cuda:N"),
    ("train", "--device", "cuda0", "auto, cpu, cuda or cuda:N"),
    ("encode", "--precision", "fp16", "bf16 or fp32"),
    ("eval", "--precision", "tf32", "bf16 or fp32"),
    ("prepare", "--precision", "half", "bf16 or fp32"),
    ("train", "--precision", "bf", "bf16 or fp32"),
]


@BINARIES
@pytest.mark.parametrize("cmd,opt,value,expected", CHOICES, ids=[f"{c} {o}" for c, o, _, _ in CHOICES])
def test_bad_choice(binary, cmd, opt, value, expected):
    expect_usage(binary, cmd, [*VALID[cmd], opt, value], f"option '{opt}': expected {expected}, found '{value}'")


@BINARIES
def test_values_that_parse(binary):
    """Good values in both forms get past the checks (to the missing model or data)."""
    p = run(binary, "encode", "--model=/nonexistent/model", "--input", "in.txt", "--output=out.npy",
            "--threads", "1", "--max-length=+16", "--colbert", "doc")
    assert p.returncode == 1 and p.stderr.startswith("colbert: error: "), p.stderr
    p = run(binary, "train", "--model-name", "x", "--pretrained", "/nonexistent/model",
            "--data", os.path.join(TMP, "cli_no_data"), "--lr=3e-5", "--warmup", "auto",
            "--seed", "18446744073709551615", "--gpus", "-1", "--val-fraction", "0", "--threads", "0",
            "--output-dir", os.path.join(TMP, "cli_train"))
    assert p.returncode == 1 and p.stderr.startswith("colbert: error: ") and "cli_no_data" in p.stderr, p.stderr


# ---- arguments ------------------------------------------------------------------------

@BINARIES
@pytest.mark.parametrize("cmd", COMMANDS)
def test_unexpected_argument(binary, cmd):
    extra = ["a", "b"] if cmd == "tokenize" else ["extra"]   # tokenize takes one FILE
    expect_usage(binary, cmd, [*VALID[cmd], *extra], f"unexpected argument '{extra[-1]}'")


@BINARIES
def test_info_extra(binary):
    expect_usage(binary, "info", ["extra"], "unexpected argument 'extra'")
    p = run(binary, "info")
    assert p.returncode == 0 and "kernels: " in p.stdout, p.stderr


MISSING = [
    ("tokenize", [], "--model"),
    ("encode", ["--input", "in.txt", "--output", "out.npy"], "--model"),
    ("encode", ["--model", "m", "--output", "out.npy"], "--input"),
    ("encode", ["--model", "m", "--input", "in.txt"], "--output"),
    ("prepare", ["--out", "o"], "--train-data' or '--beir"),
    ("prepare", ["--beir", "d"], "--out"),
    ("eval", ["--model", "m"], "--dataset"),
    ("eval", ["--dataset", "d"], "--model"),
    ("train", ["--pretrained", "m", "--data", "d"], "--model-name"),
    ("train", ["--model-name", "x", "--data", "d"], "--pretrained"),
    ("train", ["--model-name", "x", "--pretrained", "m"], "--data"),
]


@BINARIES
@pytest.mark.parametrize("cmd,args,opt", MISSING, ids=[f"{c} {o}" for c, _, o in MISSING])
def test_missing_required(binary, cmd, args, opt):
    expect_usage(binary, cmd, args, f"missing required option '{opt}'")


@BINARIES
def test_other_usage_errors(binary):
    expect_usage(binary, "eval", [*VALID["eval"], "--score-run", "x.run"],
                 "options '--model' and '--score-run' exclude each other")
    expect_usage(binary, "encode", ["--model", "m", "--input", "in.txt", "--output", "out.txt"],
                 "option '--output': expected a .npy or .safetensors file, found 'out.txt'")
    expect_usage(binary, "encode", ["--model", "m", "--input", "in.txt", "--output", "out.safetensors",
                                    "--colbert", "query"], "option '--colbert' writes .npy files")
    expect_usage(binary, "prepare", [*VALID["prepare"], "--positive-label", "x", "--negative-label", "x"],
                 "options '--positive-label' and '--negative-label' are both 'x'")


@BINARIES
def test_runtime_error_prefix(binary):
    """A missing model is a runtime error: "colbert: error: ", status 1."""
    for cmd, args in (("encode", ["--input", "-", "--output", os.path.join(TMP, "cli_never.npy")]),
                      ("tokenize", [])):
        p = run(binary, cmd, "--model", os.path.join(TMP, "no-such-model"), *args)
        lines = p.stderr.splitlines()
        assert p.returncode == 1 and len(lines) == 1, p.stderr
        assert lines[0].startswith("colbert: error: ") and "no-such-model" in lines[0], lines[0]


@BINARIES
def test_device_cuda_without_gpu(binary):
    """--device cuda where no GPU can be used (CI, the ASan build without
    CUDA): a runtime error in one line, status 1, before any model loads."""
    p = run(binary, "encode", "--model", os.path.join(TMP, "no-such-model"), "--input", "-", "--output",
            os.path.join(TMP, "cli_never.npy"), "--device", "cuda")
    if "no usable GPU" not in p.stderr and "no CUDA backend" not in p.stderr:
        pytest.skip("a GPU is usable here")
    lines = p.stderr.splitlines()
    assert p.returncode == 1 and len(lines) == 1 and lines[0].startswith("colbert: error: "), p.stderr
