"""The `backends` figure: PyTorch fp32 against ONNX Runtime fp32 and int8, the choice a user makes when
deploying a model (`seq2seq-attn export`), timed in alternation in one run so that the ratios compare like
with like. The ONNX rows need the [onnx] extra; without it they are skipped with an install hint."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

# Absolute, not relative: see `workload.py`.
from hf_seq2seq_attn import Seq2SeqAttnForConditionalGeneration

from .generation import generate_fn, one_at_a_time_fn
from .timing import time_interleaved
from .workload import Arch, Bench

BACKENDS = ("pytorch", "onnx-fp32", "onnx-int8")
ONNX_HINT = "pip install 'hf_seq2seq_attn[onnx]'"
Runners = dict[str, tuple[Any, float]]  # backend -> (model with `generate()`, size in MiB)


def safetensors_mib(folder: Path) -> float:
    """Size in MiB of the `*.safetensors` weight files `save_pretrained` wrote into `folder`."""
    return sum(f.stat().st_size for f in folder.glob("*.safetensors")) / 2**20


def onnx_mib(folder: Path, variant: str) -> float:
    """Size in MiB of the graphs of one variant (`"fp32"` or `"int8"`) of an `export_onnx` folder, as its
    manifest lists them (with any external-data files beside them)."""
    from hf_seq2seq_attn.onnx_export import MANIFEST_NAME

    manifest = json.loads((folder / MANIFEST_NAME).read_text(encoding="utf-8"))
    total = 0
    for name in manifest["graphs"][variant].values():
        total += sum(f.stat().st_size for f in folder.glob(name + "*") if f.is_file())  # graph (+ .data)
    return total / 2**20


def onnx_runners(
    model: Seq2SeqAttnForConditionalGeneration, folder: Path, threads: int
) -> Iterator[tuple[str, Any, float]]:
    """Export `model` once (fp32 and int8 graphs) and yield `(backend, ONNX Runtime model, MiB)` for each.

    The ONNX modules are imported here, from the `hf_seq2seq_attn` being timed: a `--compare_with` worker's
    package may be an older checkout without them (`compare.run_compare` asks only those that have them).
    """
    from hf_seq2seq_attn.modeling_ort import Seq2SeqAttnOnnxModel
    from hf_seq2seq_attn.onnx_export import export_onnx

    exported = Path(export_onnx(model, folder, int8=True))
    for variant in ("fp32", "int8"):
        runner = Seq2SeqAttnOnnxModel.from_pretrained(exported, int8=variant == "int8", num_threads=threads)
        yield f"onnx-{variant}", runner, onnx_mib(exported, variant)


def onnx_available() -> str | None:
    """None when the ONNX backend can run here, else the reason (a one-line note)."""
    try:
        import onnxruntime  # noqa: F401
    except ImportError as error:
        missing = getattr(error, "name", None) or ""
        if missing.startswith("onnxruntime"):
            return f"onnx rows skipped: {ONNX_HINT}"
        return f"onnx rows skipped: not available ({error})"
    return None


def bench_backends(bench: Bench, arch: Arch, threads: int) -> list[tuple[str, dict[str, Any]]]:
    """Rows `(backend, metrics)`: batch-1 greedy latency, batch-`gen_batch` greedy and beam throughput,
    model file size; ONNX rows add their ratios to the PyTorch row of this run (`x` = times better:
    PyTorch latency / theirs, their throughput / PyTorch's; `size_ratio` = their size / PyTorch's).
    The backends are timed in alternation, figure by figure (`time_interleaved`)."""
    work = bench.workload
    vocab = arch.config().vocab_size
    sentences = bench.ids(work.sentences, work.src_len, vocab)
    batch = bench.ids(work.gen_batch, work.src_len, vocab)
    with tempfile.TemporaryDirectory(prefix="seq2seq-attn-bench-") as tmp:
        runners, note = _runners(bench.ours(arch).eval(), Path(tmp), threads)

        def timed(make: Callable[[Any], Callable[[], None]]) -> dict[str, float]:
            fns = {name: make(runner) for name, (runner, _) in runners.items()}
            return time_interleaved(fns, bench.repeats, bench.warmup, bench.sync())

        latency = timed(lambda runner: one_at_a_time_fn(runner, sentences, work.new_tokens))
        greedy = timed(lambda runner: generate_fn(runner, batch, work.new_tokens))
        beam = timed(lambda runner: generate_fn(runner, batch, work.new_tokens, work.num_beams))
    if note is not None:
        print(note)
    tokens = work.gen_batch * work.new_tokens
    rows: list[tuple[str, dict[str, Any]]] = []
    for name, (_, size) in runners.items():
        row = {
            "b1_latency_ms": 1e3 * latency[name] / work.sentences,
            f"b{work.gen_batch}_greedy_tok/s": tokens / greedy[name],
            f"b{work.gen_batch}_beam{work.num_beams}_tok/s": tokens / beam[name],
            "size_MiB": size,
        }
        rows.append((name, row if name == "pytorch" else {**row, **backend_ratios(row, rows[0][1])}))
    return rows


def _runners(
    model: Seq2SeqAttnForConditionalGeneration, folder: Path, threads: int
) -> tuple[Runners, str | None]:
    """`model` saved into `folder/pytorch` and, where ONNX Runtime can run, exported into `folder/onnx`:
    each backend's runner and size, and a note saying why the ONNX rows are missing (None when they are not)."""
    model.save_pretrained(folder / "pytorch")
    runners: Runners = {"pytorch": (model, safetensors_mib(folder / "pytorch"))}
    note = onnx_available()
    if note is None:
        try:
            for backend, runner, size in onnx_runners(model, folder / "onnx", threads):
                runners[backend] = (runner, size)
        except Exception as error:  # an export or ONNX Runtime failure must not stop the other figures
            note = f"onnx rows skipped: {type(error).__name__}: {error}"
    return runners, note


def backend_ratios(row: dict[str, Any], reference: dict[str, Any]) -> dict[str, float]:
    """A backend row's figures relative to PyTorch's (`x` = times better; `size_ratio` = size / PyTorch's)."""
    latency, greedy, beam, size = list(row)[:4]
    return {
        "latency_x": reference[latency] / row[latency],
        "greedy_x": row[greedy] / reference[greedy],
        "beam_x": row[beam] / reference[beam],
        "size_ratio": row[size] / reference[size],
    }
