"""hf_seq2seq_attn.benchmark: a quick run of every figure, the side-by-side mode, the analytic FLOP
count against torch's own FLOP counter for every model variant, and the bytes of the batch-1 floor."""

from __future__ import annotations

import itertools
import json
import math
import re
import shutil
import sys
import warnings
from pathlib import Path

import pytest
import torch
from helpers import make_config, padded_batch
from torch.utils.flop_counter import FlopCounterMode

from hf_seq2seq_attn import Seq2SeqAttnConfig, Seq2SeqAttnForConditionalGeneration
from hf_seq2seq_attn.benchmark import main
from hf_seq2seq_attn.benchmark.backends import BACKENDS
from hf_seq2seq_attn.benchmark.floor import (
    bench_bandwidth,
    cache_bytes,
    last_level_cache_bytes,
    step_weight_bytes,
)
from hf_seq2seq_attn.benchmark.flops import forward_flops, train_flops_per_step
from hf_seq2seq_attn.benchmark.options import DEFAULT_FIGURES, FIGURES
from hf_seq2seq_attn.benchmark.timing import time_interleaved
from hf_seq2seq_attn.benchmark.training import can_compile
from hf_seq2seq_attn.benchmark.workload import QUICK_WORKLOAD, Bench, make_archs

REPO = Path(__file__).resolve().parents[1]
QUICK = ["--quick", "--threads", "1", "--warmup", "0"]


def metrics(row: str) -> dict[str, float]:
    """The numeric `key=value` pairs of a printed row (threads= excluded)."""
    pairs = re.findall(r"(\S+?)=([-+0-9.eE]+)(?=\s|$)", row)
    return {key: float(value) for key, value in pairs if key != "threads"}


def rows(lines: list[str], *head: str) -> list[str]:
    return [line for line in lines if line.split()[: len(head)] == list(head)]


def floor_rows(lines: list[str]) -> dict[str, dict[str, float]]:
    """The `floor` rows by label (the words between the architecture and the figures): their figures."""
    floors = {}
    for line in rows(lines, "floor"):
        label = " ".join(word for word in line.split()[3:] if "=" not in word)
        assert label not in floors, f"{label!r} printed twice"
        floors[label] = metrics(line)
    return floors


def check_floor(row: dict[str, float], ms_per_sentence: float, new_tokens: int) -> None:
    """A floor row: positive finite figures, computed from the printed ones (rounded to 3 digits)."""
    assert set(row) == {"ms/token", "memory_floor_ms", "arith_floor_ms", "x_floor"}, row
    assert all(value > 0 and math.isfinite(value) for value in row.values()), row
    assert row["ms/token"] == pytest.approx(ms_per_sentence / new_tokens, rel=0.01)
    floor = max(row["memory_floor_ms"], row["arith_floor_ms"])
    assert row["x_floor"] == pytest.approx(row["ms/token"] / floor, rel=0.02)


def onnx_installed() -> bool:
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401

        from hf_seq2seq_attn.serving.modeling_ort import Seq2SeqAttnOnnxModel  # noqa: F401
        from hf_seq2seq_attn.serving.onnx_export import export_onnx  # noqa: F401
    except ImportError:
        return False
    return True


def test_quick_run_prints_every_figure(capsys):
    assert main(QUICK) == 0
    lines = capsys.readouterr().out.splitlines()
    for figure in DEFAULT_FIGURES:
        assert rows(lines, figure), f"no {figure!r} row in:\n" + "\n".join(lines)
    assert not rows(lines, "train", "compiled"), "the compiled step is opt-in (it compiles for minutes)"
    for line in lines:
        if line.split()[0] in FIGURES and line.split()[0] != "memory":  # in-process memory can read 0
            values = metrics(line)
            assert values and all(value > 0 for value in values.values()), line
    # The textbook baseline ships in the package: its rows are there on a fresh clone.
    for figure in ("train", "greedy", "latency", "memory"):
        assert rows(lines, figure, "d2l"), f"no d2l {figure} row"
    ratios = [line for line in lines if line.startswith("ratio")]
    assert any("ours/d2l" in line for line in ratios)
    assert any("generate() / bare decoder loop" in line for line in ratios)
    step = metrics(rows(lines, "step", "ours")[0])
    assert step["b1_generate/loop"] == pytest.approx(step["b1_generate_ms"] / step["b1_loop_ms"], rel=0.01)
    floors = floor_rows(lines)
    step_row = floors["decoder step, batch 1"]
    assert all(value > 0 and math.isfinite(value) for value in step_row.values()), step_row
    assert step_row["int8_MB"] < step_row["fp32_MB"]
    assert step_row["GB/s"] == metrics(rows(lines, "bandwidth")[0])["GB/s"]
    assert step_row["GFLOP/s"] == metrics(rows(lines, "matmul")[0])["GFLOP/s"]
    latency_ms = metrics(rows(lines, "latency", "ours")[0])["ms/sentence"]
    check_floor(floors["latency ours"], latency_ms, QUICK_WORKLOAD.new_tokens)

    backends = {line.split()[1]: metrics(line) for line in rows(lines, "backends")}
    if not onnx_installed():
        assert list(backends) == ["pytorch"]
        assert any(line.startswith("onnx rows skipped") for line in lines)
        return
    assert list(backends) == list(BACKENDS)
    pytorch = backends["pytorch"]
    for name in BACKENDS[1:]:
        onnx = backends[name]
        # Ratios are computed in the same run from the printed figures (rounded to 3 digits).
        assert onnx["latency_x"] == pytest.approx(pytorch["b1_latency_ms"] / onnx["b1_latency_ms"], rel=0.02)
        assert onnx["greedy_x"] == pytest.approx(
            onnx["b4_greedy_tok/s"] / pytorch["b4_greedy_tok/s"], rel=0.02
        )
        assert onnx["size_ratio"] == pytest.approx(onnx["size_MiB"] / pytorch["size_MiB"], rel=0.02)
        check_floor(floors[f"backends {name}"], onnx["b1_latency_ms"], QUICK_WORKLOAD.new_tokens)
    # int8 weights: a lower memory floor than fp32's for the same step
    int8, fp32 = floors["backends onnx-int8"], floors["backends onnx-fp32"]
    assert int8["memory_floor_ms"] < fp32["memory_floor_ms"] == floors["latency ours"]["memory_floor_ms"]


def test_onnx_rows_are_skipped_with_an_install_hint_without_onnxruntime(capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # `import onnxruntime` raises ImportError
    assert main([*QUICK, "--only", "backends"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[1] for line in rows(lines, "backends")] == ["pytorch"]
    assert "onnx rows skipped: pip install 'hf_seq2seq_attn[onnx]'" in lines


def test_time_interleaved_alternates_and_reverses_the_order():
    calls: list[str] = []
    fns = {name: (lambda name=name: calls.append(name)) for name in ("a", "b", "c")}
    medians = time_interleaved(fns, repeats=3, warmup=1)
    assert calls == ["a", "b", "c"] + ["a", "b", "c", "c", "b", "a", "a", "b", "c"]  # warm-up, then rounds
    assert set(medians) == {"a", "b", "c"} and all(seconds >= 0 for seconds in medians.values())


@pytest.mark.parametrize("their_benchmark", ["package", "flat module"])
def test_compare_with_another_checkout(capsys, tmp_path, their_benchmark):
    """Both sides run, each importing its own package (the other one from a copy of this checkout).

    Both workers run our benchmark modules, never the other checkout's benchmark: a package like ours, or
    the flat `hf_seq2seq_attn/benchmark.py` of older checkouts (here one that fails if imported).
    """
    shutil.copytree(
        REPO / "hf_seq2seq_attn", tmp_path / "hf_seq2seq_attn", ignore=shutil.ignore_patterns("__pycache__")
    )
    if their_benchmark == "flat module":
        shutil.rmtree(tmp_path / "hf_seq2seq_attn" / "benchmark")
        (tmp_path / "hf_seq2seq_attn" / "benchmark.py").write_text(
            "raise ImportError('their benchmark ran')\n"
        )
    argv = [*QUICK, "--repeats", "2", "--only", "train,latency", "--compare_with", str(tmp_path)]
    assert main([*argv, "--compare_python", sys.executable]) == 0  # another venv's python would do
    lines = capsys.readouterr().out.splitlines()
    packages = {
        line.split()[1]: line.split()[3] for line in rows(lines, "compare") if line.split()[2] == "package"
    }
    package_lines = [line for line in rows(lines, "compare") if line.split()[2] == "package"]
    assert len(package_lines) == 2 and all("transformers=" in line for line in package_lines)
    assert Path(packages["theirs"]) == tmp_path / "hf_seq2seq_attn"
    assert Path(packages["ours"]) == REPO / "hf_seq2seq_attn"
    for side, figure in itertools.product(("ours", "theirs"), ("train", "latency")):
        (row,) = rows(lines, "compare", side, figure)
        assert next(iter(metrics(row).values())) > 0, row
    ratios = [line for line in lines if line.startswith("ratio") and "ours/theirs" in line]
    assert len(ratios) == 2
    assert not rows(lines, "compare", "ours", "greedy"), "--only was not honoured"
    # The floor: once for both sides (one model shape, one machine), each side's latency against it.
    floors = floor_rows(lines)
    assert set(floors) == {"decoder step, batch 1", "latency ours", "latency theirs"}
    for side in ("ours", "theirs"):
        (row,) = rows(lines, "compare", side, "latency")
        check_floor(floors[f"latency {side}"], metrics(row)["ms/sentence"], QUICK_WORKLOAD.new_tokens)


@pytest.mark.skipif(not onnx_installed(), reason="needs the [onnx] extra")
def test_compare_times_our_onnx_latency_against_their_pytorch_latency(capsys, tmp_path):
    """The other checkout need not have an ONNX export (036bb98 has none): its side times PyTorch only."""
    shutil.copytree(
        REPO / "hf_seq2seq_attn", tmp_path / "hf_seq2seq_attn", ignore=shutil.ignore_patterns("__pycache__")
    )
    for name in ("onnx_export.py", "modeling_ort.py"):
        (tmp_path / "hf_seq2seq_attn" / "serving" / name).unlink()
    only = "onnx_fp32,onnx_int8,onnx_int8_beam"
    argv = [*QUICK, "--repeats", "2", "--only", only, "--compare_with", str(tmp_path)]
    assert main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    for figure, theirs_figure, unit in (
        ("onnx_fp32", "latency", "ms/sentence"),
        ("onnx_int8", "latency", "ms/sentence"),
        ("onnx_int8_beam", "beam", "new_tokens/s"),  # the beam search Loop against their PyTorch beam search
    ):
        (theirs,) = rows(lines, "compare", "theirs", theirs_figure)
        (ours,) = rows(lines, "compare", "ours", figure)
        (ratio,) = [
            line for line in lines if line.startswith("ratio") and f"{figure}/{theirs_figure}" in line
        ]
        # The ratio is computed from the printed figures (rounded to 3 significant digits).
        expected = metrics(ours)[unit] / metrics(theirs)[unit]
        assert float(ratio.split()[5]) == pytest.approx(expected, rel=0.02), ratio
    assert not rows(lines, "compare", "ours", "latency"), "only the asked figures run on our side"
    assert not rows(lines, "compare", "ours", "beam")
    assert set(floor_rows(lines)) == {
        "decoder step, batch 1",
        "onnx_fp32 ours",
        "onnx_int8 ours",
        "latency theirs",
    }


@pytest.mark.skipif(not onnx_installed(), reason="needs the [onnx] extra")
def test_compare_times_onnx_on_both_sides_where_the_other_checkout_has_it(capsys, tmp_path):
    """E.g. the same package under another transformers: ONNX like for like, and against their PyTorch."""
    shutil.copytree(
        REPO / "hf_seq2seq_attn", tmp_path / "hf_seq2seq_attn", ignore=shutil.ignore_patterns("__pycache__")
    )
    argv = [*QUICK, "--repeats", "2", "--only", "onnx_int8", "--compare_with", str(tmp_path)]
    assert main([*argv, "--compare_python", sys.executable]) == 0
    lines = capsys.readouterr().out.splitlines()
    for side, figure in (("ours", "onnx_int8"), ("theirs", "onnx_int8"), ("theirs", "latency")):
        assert len(rows(lines, "compare", side, figure)) == 1, (side, figure)
    labels = [line.split()[2] for line in lines if line.startswith("ratio")]
    assert labels == ["onnx_int8/latency", "onnx_int8"]


def test_compare_shape_joey_times_the_luong_input_feeding_decoder(capsys, tmp_path):
    """`--compare_shape joey`: both workers time the default sizes with a Luong-style decoder and input feeding."""
    from hf_seq2seq_attn.benchmark.workload import compare_arch

    shutil.copytree(
        REPO / "hf_seq2seq_attn", tmp_path / "hf_seq2seq_attn", ignore=shutil.ignore_patterns("__pycache__")
    )
    argv = [
        *QUICK,
        "--repeats",
        "1",
        "--only",
        "latency",
        "--compare_shape",
        "joey",
        "--compare_with",
        str(tmp_path),
    ]
    assert main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    (arch,) = [line for line in lines if line.startswith("arch")]
    assert arch.split()[2] == "joey"
    config = compare_arch("joey", quick=True).config()
    assert (config.decoder_style, config.input_feeding, config.attention_type) == ("luong", True, "additive")
    for side in ("ours", "theirs"):
        assert len(rows(lines, "compare", side, "latency")) == 1


@pytest.mark.slow
@pytest.mark.skipif(not can_compile(), reason="torch.compile on CPU (inductor) needs a C++ compiler (g++)")
def test_compiled_training_step_is_timed_beside_the_eager_one(capsys):
    """`--only compiled`: a real `torch.compile` of the training step (no mock), its row and its ratio to eager."""
    assert main([*QUICK, "--only", "compiled"]) == 0
    lines = capsys.readouterr().out.splitlines()
    compiled, eager = metrics(rows(lines, "train", "compiled")[0]), metrics(rows(lines, "train", "ours")[0])
    assert compiled["tokens/s"] > 0 and eager["tokens/s"] > 0
    ratio = next(line for line in lines if "compiled/eager" in line)
    # printed to 3 decimals; compilation is outside the timed call even with --warmup 0 (else ~0.002)
    assert float(ratio.split()[-1]) == pytest.approx(compiled["tokens/s"] / eager["tokens/s"], abs=1e-3)
    assert float(ratio.split()[-1]) > 0.05


@pytest.mark.slow
def test_compare_with_a_broken_checkout_names_the_failure(capsys, tmp_path):
    (tmp_path / "hf_seq2seq_attn").mkdir()
    (tmp_path / "hf_seq2seq_attn" / "__init__.py").write_text("raise ImportError('deliberately broken')\n")
    assert main([*QUICK, "--only", "latency", "--compare_with", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: the theirs worker stopped") and "deliberately broken" in err


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--only", "train,nope"], "unknown figure"),
        (["--threads", "0"], "--threads"),
        (["--compare_with", "/nonexistent/checkout"], "no hf_seq2seq_attn"),
        (["--compare_with", ".", "--only", "memory"], "unknown figure"),
        (["--compare_with", ".", "--compare_python", "/nonexistent/python"], "--compare_python"),
    ],
)
def test_user_mistakes_give_an_error_line_and_exit_code_2(capsys, argv, message):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and "Traceback" not in err


def test_help_returns_zero(capsys):
    assert main(["--help"]) == 0
    assert "--compare_with" in capsys.readouterr().out


# --------------------------------------------------------------------------------------------
# FLOP counting
# --------------------------------------------------------------------------------------------
def torch_flops(model: Seq2SeqAttnForConditionalGeneration, input_ids, labels, attention_mask=None) -> int:
    """Matmul FLOPs torch's FlopCounterMode sees in one teacher-forced forward.

    oneDNN is switched off: on CPU `nn.LSTM` over a whole (unpacked) sequence runs as one fused
    `mkldnn_rnn_layer` kernel for which FlopCounterMode has no formula (it would count 0); without
    oneDNN it decomposes into the per-step `mm`/`addmm` it does count. GRU and tanh-RNN, and every
    packed sequence (padded sources), decompose either way; a packed RNN is counted over real tokens only.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "TF32 acceleration on top of oneDNN" notice on flag changes
        with torch.backends.mkldnn.flags(enabled=False), FlopCounterMode(display=False) as counter:
            model(input_ids=input_ids, attention_mask=attention_mask, labels=labels)
    return counter.get_total_flops()


def test_flop_counter_matches_hand_count():
    config = Seq2SeqAttnConfig(
        vocab_size=10,
        embedding_size=2,
        encoder_hidden_size=3,  # K = 6
        decoder_hidden_size=4,
        attention_size=5,
        embedding_dropout=0.0,
        readout_dropout=0.0,
    )
    batch, src_len, tgt_len = 2, 3, 4
    # Per source token: encoder GRU, 2 directions x (input 2*9*2 + recurrent 2*9*3), then keys 2*6*5.
    encoder = batch * src_len * (2 * (36 + 54) + 60)
    bridge = batch * 2 * 6 * 4
    # Per target step: query 2*4*5, scores 2*3*5, context 2*3*6, GRU input 2*12*(2+6) and
    # recurrent 2*12*4, read-out 2*(4+6+2)*2, vocabulary 2*2*10.
    decoder = batch * tgt_len * (40 + 30 + 36 + 192 + 96 + 48 + 40)
    hand = encoder + bridge + decoder
    assert forward_flops(config, batch, src_len, tgt_len) == hand == 5392
    assert train_flops_per_step(config, batch, src_len, tgt_len) == 3 * hand


RNN_TYPES = ("gru", "lstm", "rnn")
ATTENTION_TYPES = ("additive", "dot", "general", "scaled_dot")
HEADS = (1, 4)
STYLES = ("bahdanau", "luong", "luong+feeding")
# (bidirectional, layers, bridge, tied): every combination of these occurs below, 4-5 times each.
SHAPES = list(itertools.product((True, False), (1, 2), ("linear", "zero"), (True, False)))
VARIANTS = [
    (rnn, attention, heads, style, *SHAPES[index % len(SHAPES)])
    for index, (rnn, attention, heads, style) in enumerate(
        itertools.product(RNN_TYPES, ATTENTION_TYPES, HEADS, STYLES)
    )
]


def variant_config(rnn, attention, heads, style, bidirectional, layers, bridge, tied) -> Seq2SeqAttnConfig:
    return make_config(
        rnn_type=rnn,
        attention_type=attention,
        num_attention_heads=heads,
        decoder_style=style.split("+")[0],
        input_feeding=style.endswith("+feeding"),
        bidirectional=bidirectional,
        encoder_layers=layers,
        decoder_layers=layers,
        bridge=bridge,
        tie_word_embeddings=tied,
        decoder_vocab_size=None if tied else 19,  # untied: a separate target vocabulary too
    )


def test_variants_cover_every_value():
    for position, values in enumerate((RNN_TYPES, ATTENTION_TYPES, HEADS, STYLES)):
        assert {variant[position] for variant in VARIANTS} == set(values)
    assert {variant[4:] for variant in VARIANTS} == set(SHAPES)


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: "-".join(map(str, v)))
def test_forward_flops_equal_torch_flop_counter(variant):
    """Exact: both count the same matmuls in integers (see `torch_flops` for the oneDNN switch)."""
    config = variant_config(*variant)
    model = Seq2SeqAttnForConditionalGeneration(config).eval()
    target_vocab = config.vocab_size if variant[-1] else 19  # tied, or untied with its own vocabulary
    assert model.lm_head.out_features == target_vocab
    batch, src_len, tgt_len = 2, 5, 3
    input_ids = torch.randint(4, config.vocab_size, (batch, src_len))
    labels = torch.randint(4, target_vocab, (batch, tgt_len))
    assert torch_flops(model, input_ids, labels) == forward_flops(config, batch, src_len, tgt_len)


@pytest.mark.parametrize("rnn", RNN_TYPES)
def test_forward_flops_of_a_padded_batch(rnn):
    """A right-padded source runs the packed encoder RNN over real tokens only; attention spans all S."""
    config = make_config(rnn_type=rnn, encoder_layers=2)
    model = Seq2SeqAttnForConditionalGeneration(config).eval()
    lengths = [5, 2, 4]
    input_ids = padded_batch(lengths)
    labels = torch.randint(4, 23, (3, 4))
    counted = torch_flops(model, input_ids, labels, attention_mask=(input_ids != 0).long())
    assert counted == forward_flops(config, 3, 5, 4, source_tokens=sum(lengths))
    assert counted < forward_flops(config, 3, 5, 4)


# --------------------------------------------------------------------------------------------
# The floor of batch-1 decoding: bytes one decoder step reads
# --------------------------------------------------------------------------------------------
DECODER = "model.decoder."
# Per variant: the tensors of the state_dict one step reads in full, as (weight matrices, the rest).
STEP_TENSORS = {
    "gru-additive-1head-bahdanau-tied": (
        dict(),
        ["rnn.weight_ih_l0", "rnn.weight_hh_l0", "attention.query_proj.weight", "readout.weight"],
        ["rnn.bias_ih_l0", "rnn.bias_hh_l0", "attention.energy", "readout.bias"],
    ),
    "lstm-general-4heads-luong-2layers-untied": (
        dict(
            rnn_type="lstm",
            attention_type="general",
            num_attention_heads=4,
            decoder_style="luong",
            decoder_layers=2,
            tie_word_embeddings=False,
            decoder_vocab_size=19,
        ),  # fmt: skip
        [
            "rnn.weight_ih_l0",
            "rnn.weight_hh_l0",
            "rnn.weight_ih_l1",
            "rnn.weight_hh_l1",
            "attention.query_proj.weight",
            "attention.out_proj.weight",
            "readout.weight",
        ],  # fmt: skip
        [
            "rnn.bias_ih_l0",
            "rnn.bias_hh_l0",
            "rnn.bias_ih_l1",
            "rnn.bias_hh_l1",
            "attention.query_proj.bias",
            "attention.out_proj.bias",
            "readout.bias",
        ],  # fmt: skip
    ),
}


@pytest.mark.parametrize("variant", STEP_TENSORS)
def test_step_weight_bytes_count_the_tensors_a_decoder_step_reads(variant):
    """Against the state_dict: the named decoder tensors, the whole output projection, one embedding row;
    not the key/value projections, `bilinear` or the bridge (once per source). int8: 1 byte per element of
    the weight matrices and the embedding row, 4 for the rest."""
    overrides, matrices, rest = STEP_TENSORS[variant]
    config = make_config(**overrides)
    model = Seq2SeqAttnForConditionalGeneration(config)
    state = model.state_dict()
    matrix_count = sum(state[DECODER + name].numel() for name in matrices) + state["lm_head.weight"].numel()
    rest_count = sum(state[DECODER + name].numel() for name in rest) + state["lm_head.bias"].numel()
    row = config.embedding_size
    assert step_weight_bytes(model) == 4 * (matrix_count + rest_count + row)
    assert step_weight_bytes(model, int8=True) == matrix_count + row + 4 * rest_count


def test_int8_step_reads_about_a_quarter_of_the_fp32_bytes_at_the_default_shape():
    """The weight matrices dominate: int8 reads a little over 1/4 of the fp32 bytes (biases stay fp32)."""
    model = Seq2SeqAttnForConditionalGeneration(make_archs(quick=False)[0].config())
    fp32, int8 = step_weight_bytes(model), step_weight_bytes(model, int8=True)
    matrices = sum(
        p.numel() for name, p in model.named_parameters() if name.endswith("weight") and p.dim() == 2
    )
    assert fp32 > 4e6 and 0.25 < int8 / fp32 < 0.26 and fp32 < 4 * matrices


@pytest.mark.parametrize("attention, heads", [("additive", 1), ("dot", 1), ("general", 1), ("scaled_dot", 4)])
def test_cache_bytes_equal_the_keys_and_values_of_init_cache(attention, heads):
    """Against the tensors `init_cache` keeps for one source (the same tensor counted once)."""
    config = make_config(attention_type=attention, num_attention_heads=heads)
    model = Seq2SeqAttnForConditionalGeneration(config).eval()
    input_ids = padded_batch([7])
    with torch.no_grad():
        encoded = model.model.encoder(input_ids, torch.ones_like(input_ids))
        cache = model.model.decoder.init_cache(encoded)
    tensors = {tensor.data_ptr(): tensor for tensor in (cache.keys, cache.values)}
    assert cache_bytes(model, 7) == sum(t.numel() * t.element_size() for t in tensors.values())


@pytest.mark.skipif(not onnx_installed(), reason="needs the [onnx] extra")
def test_int8_weight_count_matches_the_int8_decoder_step_graph(tmp_path):
    """The elements `step_weight_bytes` counts at 1 byte are those the int8 `decoder_step` graph multiplies
    as int8 (`MatMulInteger` weights); the graph's embedding table is int8 too (one row read per step)."""
    import onnx
    from onnx import numpy_helper

    from hf_seq2seq_attn.serving.onnx_export import export_onnx

    config = make_config(rnn_type="lstm", num_attention_heads=2, decoder_layers=2)
    model = Seq2SeqAttnForConditionalGeneration(config).eval()
    graph = onnx.load(str(Path(export_onnx(model, tmp_path, int8=True)) / "decoder_step.int8.onnx")).graph
    weights = {name for node in graph.node if node.op_type == "MatMulInteger" for name in node.input}
    arrays = [numpy_helper.to_array(tensor) for tensor in graph.initializer if tensor.name in weights]
    int8_elements = sum(array.size for array in arrays if array.ndim == 2)  # not the zero points
    row = config.embedding_size
    # fp32 - int8 = 3 bytes saved per element held as int8
    counted = (step_weight_bytes(model) - step_weight_bytes(model, int8=True)) // 3 - row
    assert int8_elements == counted


def test_bandwidth_is_a_positive_number_of_gigabytes_per_second():
    row = bench_bandwidth(Bench(torch.device("cpu"), 1, 0, QUICK_WORKLOAD))
    assert 0 < row["GB/s"] < math.inf and row["MiB"] == QUICK_WORKLOAD.stream_mib
    assert last_level_cache_bytes() >= 0


# --------------------------------------------------------------------------------------------
# Data section (`--data`): tiny corpora here; the real sizes are in the README
# --------------------------------------------------------------------------------------------
DATA_FIGURES = {"peak_rss_mib", "first_step_s", "total_s"}


def test_data_section_prints_cold_and_warm_runs_and_their_ratios(capsys, tmp_path, monkeypatch):
    monkeypatch.setattr("hf_seq2seq_attn.benchmark.data.TOKENIZE_ROUNDS", 1)
    argv = ["--data", "--data_pairs", "200", "--data_tokenize_pairs", "50", "--data_dir", str(tmp_path)]
    assert main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    (row,) = rows(lines, "data", "ours", "200")
    values = metrics(row)
    assert set(values) == DATA_FIGURES | {f"warm_{name}" for name in DATA_FIGURES}, row
    assert all(value > 0 for value in values.values()), row
    assert values["first_step_s"] < values["total_s"] and values["warm_first_step_s"] < values["warm_total_s"]
    (tokenize,) = rows(lines, "tokenize", "ours", "50")
    assert metrics(tokenize)["pairs/s"] > 0
    (ratio,) = [line for line in lines if "cold/warm, 200 pairs" in line]
    expected = values["first_step_s"] / values["warm_first_step_s"]
    assert float(ratio.split()[-1]) == pytest.approx(expected, rel=0.02), ratio  # rows print 3 digits
    pairs = [json.loads(line) for line in (tmp_path / "corpus-200.jsonl").read_text().splitlines()]
    assert len(pairs) == 200 and all(
        15 <= len(p["source"].split()) == len(p["target"].split()) <= 25 for p in pairs
    )


@pytest.mark.slow
def test_data_section_side_by_side_with_another_checkout(capsys, tmp_path):
    """ "today" is the train command of the checkout given: here a copy of this one."""
    other = tmp_path / "other"
    shutil.copytree(
        REPO / "hf_seq2seq_attn", other / "hf_seq2seq_attn", ignore=shutil.ignore_patterns("__pycache__")
    )
    argv = ["--data", "--data_pairs", "300", "--data_baseline_pairs", "200", "--data_tokenize_pairs", "50",
            "--compare_with", str(other)]  # fmt: skip
    assert main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[2] for line in rows(lines, "data", "ours")] == ["200", "300"], (
        "ours at today's sizes too"
    )
    (today,) = rows(lines, "data", "today", "200")
    assert set(metrics(today)) == DATA_FIGURES
    assert rows(lines, "tokenize", "today")
    labels = " ".join(line for line in lines if line.startswith("ratio"))
    for label in (
        "peak RSS 300/200",
        "today/ours peak RSS, 200",
        "today/ours first step",
        "ours/today pairs/s",
    ):
        assert label in labels, label


def test_data_section_refuses_sizes_below_one(capsys):
    assert main(["--data", "--data_pairs", "0"]) == 2
    assert "--data_pairs" in capsys.readouterr().err
