"""A Seq2SeqAttn model backed by ONNX Runtime sessions, with the same `generate()`.

[`Seq2SeqAttnOnnxModel`] runs the three graphs written by [`export_onnx`] (`onnx_export.py`): the
encoder once per batch, the decoder's initial state once, and one decoder step per generated token.
Like optimum's `ORTModelForSeq2SeqLM` it is a `GenerationMixin` whose `forward` returns torch
logits, so greedy search, beam search, sampling, `no_repeat_ngram_size`, `num_return_sequences`,
`output_scores` / `output_logits`, `output_attentions` and the package's translation pipeline all work
unchanged. The recurrent state between steps is a [`Seq2SeqAttnOnnxCache`] of NumPy arrays that
ONNX Runtime reads and writes directly; of each step's outputs, only the logits (and attention weights)
become torch tensors.

Plain greedy search (one beam, no sampling, no logits processor or extra stopping criterion active: see
[`loop_requests.greedy_request`]) skips that per-token Python: [`Seq2SeqAttnOnnxModel.generate`] runs the encoder,
the initial state, and then one ONNX `Loop` graph that decodes every token inside ONNX Runtime
([`onnx_loop.build_greedy_graph`], composed from the step graph when the model first decodes greedily). So does
beam search ([`loop_requests.beam_request`]: any number of beams, length penalty, early stopping, n-best lists,
min/max lengths, scores; [`onnx_beam_loop.build_beam_graph`]). The ids are those `GenerationMixin.generate()` gives;
any other request goes through `GenerationMixin.generate()`, and the model logs once (at INFO) why.

Shapes as in `modeling_seq2seq_attn.py`: B batch, S source length, T target length, L decoder
layers, H decoder hidden, E embedding, K encoder output, N heads, D per-head width, V target vocabulary.

Example:

```python
>>> from hf_seq2seq_attn.serving.modeling_ort import load_onnx_model_and_tokenizer
>>> from hf_seq2seq_attn.tools.inference import translate
>>> model, tokenizer = load_onnx_model_and_tokenizer("outputs/demo-onnx")   # int8 graphs if exported
>>> [t.text for t in translate(model, tokenizer, ["Y dijo Dios: Sea la luz."], num_beams=5)]
```
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import pathlib
from typing import Any

import numpy as np
import torch
from transformers import GenerationConfig, PreTrainedModel
from transformers.generation.utils import GenerateBeamEncoderDecoderOutput, GenerateEncoderDecoderOutput
from transformers.modeling_outputs import Seq2SeqLMOutput

from ..core.configuration_seq2seq_attn import Seq2SeqAttnConfig
from ..core.modeling_seq2seq_attn import (
    CACHE_NAME,
    Seq2SeqAttnEncoderOutput,
    Seq2SeqAttnGenerationMixin,
    check_token_ids,
    source_mask,
    take_cache,
)
from .loop_requests import BEAM_SEARCH, GREEDY, BeamRequest, GreedyRequest, loop_request
from .onnx_beam_loop import BEAM_OUTPUTS, build_beam_graph
from .onnx_export import (
    GRAPH_NAMES,
    MANIFEST_FIELDS,
    MANIFEST_FORMAT,
    MANIFEST_NAME,
    MANIFEST_VERSION,
    PRECISIONS,
    RECURRENT_FIELDS,
    STATE_FIELDS,
    require,
)
from .onnx_loop import GREEDY_OUTPUT, build_greedy_graph

logger = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------------
# Inputs: NumPy arrays for ONNX Runtime. They are checked by the PyTorch model's own functions
# (`source_mask`, `check_token_ids`) on zero-copy torch views (`torch.from_numpy`): the traced graphs
# hold no checks (the model's became constants when it was exported).
# --------------------------------------------------------------------------------------------
def _numpy(tensor: Any, dtype: type) -> np.ndarray:
    array = tensor.detach().cpu().numpy() if isinstance(tensor, torch.Tensor) else np.asarray(tensor)
    return np.ascontiguousarray(array, dtype=dtype)


# --------------------------------------------------------------------------------------------
# Reading an export folder (its files are checked before use: a copied, edited or half-written
# folder gets one error naming the file and the problem, not a KeyError or an ONNX Runtime trace)
# --------------------------------------------------------------------------------------------
REEXPORT = "Export the folder again: `seq2seq-attn export --model MODEL_DIR --output DIR`."


def _json_object(path: pathlib.Path) -> dict[str, Any]:
    """The JSON object in `path`; `ValueError` naming the file when it is not one."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as error:  # JSONDecodeError is a ValueError
        raise ValueError(f"{str(path)!r} is not valid JSON ({error}). {REEXPORT}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{str(path)!r} holds a JSON {type(data).__name__}, not an object. {REEXPORT}")
    return data


def _is_type(value: Any, kind: type) -> bool:
    return isinstance(value, kind) and not (kind is int and isinstance(value, bool))


def _check_state_names(manifest: dict[str, Any], where: str) -> None:
    """`state_names` are known decoder state fields (hidden, keys and values always); the recurrent ones follow."""
    names = manifest["state_names"]
    if (
        not all(isinstance(name, str) and name in STATE_FIELDS for name in names)
        or len(set(names)) != len(names)
        or not {"hidden", "keys", "values"} <= set(names)
    ):
        raise ValueError(
            f"{where}: `state_names` must list distinct fields among {list(STATE_FIELDS)}, including hidden, "
            f"keys and values; got {names!r}. {REEXPORT}"
        )
    recurrent = [name for name in names if name in RECURRENT_FIELDS]
    if manifest["recurrent_state_names"] != recurrent:
        raise ValueError(
            f"{where}: `recurrent_state_names` is {manifest['recurrent_state_names']!r} but `state_names` "
            f"{names!r} make it {recurrent!r}. {REEXPORT}"
        )


def _check_graph_table(graphs: dict[str, Any], where: str) -> None:
    """`graphs` maps "fp32" (and optionally "int8") to `{graph name: file name}` for all three graphs."""
    unknown = sorted(set(graphs) - set(PRECISIONS))
    if "fp32" not in graphs or unknown:
        raise ValueError(
            f"{where}: `graphs` must have an 'fp32' entry and optionally 'int8'; got {sorted(graphs)}. "
            f"{REEXPORT}"
        )
    for precision, files in graphs.items():
        if (
            not isinstance(files, dict)
            or sorted(files) != sorted(GRAPH_NAMES)
            or not all(isinstance(name, str) and name for name in files.values())
        ):
            raise ValueError(
                f"{where}: `graphs.{precision}` must map each of {list(GRAPH_NAMES)} to a file name; got "
                f"{files!r}. {REEXPORT}"
            )


def read_manifest(folder: pathlib.Path) -> dict[str, Any]:
    """The checked `onnx_config.json` of an export folder (see `onnx_export.MANIFEST_FIELDS`).

    Raises:
        `FileNotFoundError`: the folder does not exist or has no manifest.
        `ValueError`: the manifest is not JSON, lacks or adds fields, has a field of the wrong type, is of
            another format (version), or lists unknown state fields or graphs. Graph paths are checked when
            they are opened ([`graph_path`]).
    """
    if not folder.is_dir():
        raise FileNotFoundError(f"No ONNX export folder at {str(folder)!r}.")
    path = folder / MANIFEST_NAME
    if not path.is_file():
        raise FileNotFoundError(
            f"{str(folder)!r} is not an ONNX export folder (no {MANIFEST_NAME}); write one with "
            "`seq2seq-attn export --model MODEL_DIR --output DIR`."
        )
    manifest = _json_object(path)
    where = repr(str(path))
    missing = [name for name in MANIFEST_FIELDS if name not in manifest]
    unknown = sorted(set(manifest) - set(MANIFEST_FIELDS))
    if missing or unknown:
        problems = ([f"lacks the fields {missing}"] if missing else []) + (
            [f"has unknown fields {unknown}"] if unknown else []
        )
        raise ValueError(
            f"{where} {' and '.join(problems)}: it is not a manifest written by `seq2seq-attn export` (format "
            f"version {MANIFEST_VERSION}). {REEXPORT}"
        )
    for name, kind in MANIFEST_FIELDS.items():
        if not _is_type(manifest[name], kind):
            raise ValueError(
                f"{where}: field {name!r} must be a JSON {kind.__name__}, got {manifest[name]!r}. {REEXPORT}"
            )
    if manifest["format"] != MANIFEST_FORMAT or manifest["format_version"] != MANIFEST_VERSION:
        raise ValueError(
            f"{where}: format {manifest['format']!r} version {manifest['format_version']}, but this package reads "
            f"{MANIFEST_FORMAT!r} version {MANIFEST_VERSION}. Export the model with this version of the package."
        )
    _check_state_names(manifest, where)
    _check_graph_table(manifest["graphs"], where)
    return manifest


def graph_path(folder: pathlib.Path, filename: str) -> pathlib.Path:
    """`folder / filename`, refusing a name that leads outside `folder` (absolute, `..`, or a symlink).

    The manifest is data anyone can edit: a loader that followed it anywhere would open files its user never
    pointed it at.
    """
    if pathlib.PurePath(filename).is_absolute():
        raise ValueError(
            f"{MANIFEST_NAME} in {str(folder)!r} names the graph {filename!r} by an absolute path; graph files "
            f"must be inside the export folder. {REEXPORT}"
        )
    path = folder / filename
    resolved, root = path.resolve(), folder.resolve()
    if not resolved.is_relative_to(root):
        raise ValueError(
            f"{MANIFEST_NAME} in {str(folder)!r} names the graph {filename!r}, which resolves to {str(resolved)!r}, "
            f"outside the folder; graph files must be inside the export folder. {REEXPORT}"
        )
    if not path.is_file():
        raise FileNotFoundError(f"{str(path)!r} is missing. {REEXPORT}")
    return path


def _open_session(ort: Any, path: pathlib.Path, options: Any) -> Any:
    """An ONNX Runtime session on `path`; `ValueError` naming the file when it is not a loadable graph."""
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    # ONNX Runtime's error classes (InvalidProtobuf, Fail, NoSuchFile, ...) derive from Exception alone.
    except Exception as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ValueError(
            f"{str(path)!r} is not a loadable ONNX graph (truncated or corrupted?): {reason}. {REEXPORT}"
        ) from None


def _check_graph_io(sessions: dict[str, Any], manifest: dict[str, Any], folder: pathlib.Path) -> None:
    """The graphs take and return what the model feeds and reads, so a swapped or foreign file (or edited
    state names) is refused here rather than failing inside the first `generate()`."""
    states = list(manifest["state_names"])
    recurrent = [f"next_{name}" for name in manifest["recurrent_state_names"]]
    # name -> (inputs it may take, inputs it must take, outputs it must return)
    expected: dict[str, tuple[set[str], set[str], set[str]]] = {
        "encoder": (
            {"input_ids", "attention_mask"},
            {"input_ids", "attention_mask"},
            {"last_hidden_state", "final_hidden_state"},
        ),
        # the tracer drops inputs a configuration does not read (the final state with bridge="zero")
        "decoder_init": ({"last_hidden_state", "final_hidden_state", "attention_mask"}, set(), set(states)),
        "decoder_step": (
            {"decoder_input_ids", "mask", *states},
            {"decoder_input_ids", "mask", *states},
            {"logits", "attn_weights", *recurrent},
        ),
    }
    for name, (allowed, required, needed) in expected.items():
        inputs = {node.name for node in sessions[name].get_inputs()}
        outputs = {node.name for node in sessions[name].get_outputs()}
        if not required <= inputs <= allowed or not needed <= outputs:
            raise ValueError(
                f"The {name} graph in {str(folder)!r} takes {sorted(inputs)} and returns {sorted(outputs)}, but "
                f"{MANIFEST_NAME} (state {states}) needs inputs among {sorted(allowed)} and outputs "
                f"{sorted(needed)}: the folder's files do not belong together. {REEXPORT}"
            )


def read_onnx_config(folder: pathlib.Path) -> Seq2SeqAttnConfig:
    """The `config.json` of an export folder, refused unless it holds a `seq2seq_attn` model.

    Read as JSON first ([`inference.check_config_file`]): a missing file is an error, not the config class's
    defaults, which would build a model that does not match the graphs.
    """
    from ..tools.inference import check_config_file

    path = folder / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"{str(folder)!r} has no config.json beside its ONNX graphs. {REEXPORT}")
    check_config_file(str(path), str(folder))
    try:
        return Seq2SeqAttnConfig.from_pretrained(str(folder))
    except (OSError, TypeError, ValueError) as error:
        raise ValueError(f"{str(path)!r} is not a valid Seq2SeqAttn config: {error}") from None


def _read_generation_config(folder: pathlib.Path) -> GenerationConfig | None:
    if not (folder / "generation_config.json").is_file():
        return None
    try:
        return GenerationConfig.from_pretrained(str(folder))
    except OSError as error:  # transformers reports a file that is not JSON as an OSError
        raise ValueError(f"{str(folder / 'generation_config.json')!r} is unreadable: {error}") from None


# --------------------------------------------------------------------------------------------
# Decoder state
# --------------------------------------------------------------------------------------------
class Seq2SeqAttnOnnxCache:
    """The decoder state between ONNX steps, as NumPy arrays ONNX Runtime reads without copying.

    Attributes:
        states: `{"hidden": (L, B, H), "cell": (L, B, H) (LSTM), "keys": (B, N, S, D), "values": (B, N, S, D
            or K), "feed": (B, E) (Luong input feeding)}`, float32, only the fields the model has.
        mask: `(B, S)` bool source mask.
        seen_tokens: target tokens consumed so far.
        groups: `(B,)` labels of adjacent rows with identical keys, values and mask (the beams of one
            source), made by the first [`reorder_cache`].
    """

    is_compileable = False

    def __init__(
        self,
        states: dict[str, np.ndarray],
        mask: np.ndarray,
        seen_tokens: int = 0,
        groups: np.ndarray | None = None,
    ):
        self.states = states
        self.mask = mask
        self.seen_tokens = seen_tokens
        self.groups = groups

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return self.seen_tokens

    def reorder_cache(self, beam_idx: torch.Tensor | np.ndarray) -> None:
        """Select batch rows in place (beam search): `hidden`/`cell` are batch-second, the rest batch-first.

        Keys, values and the mask are copied only when a row takes a row with other contents: beam search
        shuffles the beams of one source, whose rows are identical, so usually they are left alone.
        """
        index = _numpy(beam_idx, np.int64)
        for name in ("hidden", "cell"):
            if name in self.states:
                self.states[name] = np.take(self.states[name], index, axis=1)
        if "feed" in self.states:
            self.states["feed"] = np.take(self.states["feed"], index, axis=0)
        if self.groups is None:
            self.groups = _equal_row_groups(self.states["keys"], self.states["values"], self.mask)
        if not np.array_equal(self.groups[index], self.groups):
            for name in ("keys", "values"):
                self.states[name] = np.take(self.states[name], index, axis=0)
            self.mask = np.take(self.mask, index, axis=0)
            self.groups = self.groups[index]


def _equal_row_groups(*arrays: np.ndarray) -> np.ndarray:
    """`(B,)` labels, one per run of adjacent rows that are identical in every (batch-first) array."""
    same = np.ones(arrays[0].shape[0] - 1, dtype=bool)  # (B-1,)
    for array in arrays:
        same &= (array[1:] == array[:-1]).reshape(array.shape[0] - 1, -1).all(axis=1)
    return np.concatenate([[0], np.cumsum(~same)]).astype(np.int64)


# --------------------------------------------------------------------------------------------
# Encoder
# --------------------------------------------------------------------------------------------
class Seq2SeqAttnOnnxEncoder:
    """The encoder graph behind the interface `generate()` expects from `get_encoder()`."""

    main_input_name = "input_ids"

    def __init__(self, session: Any, config: Seq2SeqAttnConfig):
        self.session = session
        self.config = config

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs: Any,
    ) -> Seq2SeqAttnEncoderOutput:
        """Encode a right-padded batch `(B, S)`; returns torch `last_hidden_state (B, S, K)`,
        `final_hidden_state (B, K)` and the bool `attention_mask (B, S)` (all batch-first, so `generate()`
        can expand them for beams). `output_hidden_states` is not supported by the graph and ignored."""
        ids = _numpy(input_ids, np.int64)
        # The PyTorch encoder's checks, in its order: the batch and its mask, then the ids.
        mask = source_mask(
            torch.from_numpy(ids),
            None if attention_mask is None else torch.from_numpy(_numpy(attention_mask, np.int64)),
            self.config.resolved_pad_token_id,
        )  # (B, S) bool
        check_token_ids(torch.from_numpy(ids), self.config.vocab_size, "input_ids")
        states, final = self.session.run(
            None, {"input_ids": ids, "attention_mask": mask.numpy().astype(np.int64)}
        )
        return Seq2SeqAttnEncoderOutput(
            last_hidden_state=torch.from_numpy(states),  # type: ignore[arg-type]  # (B, S, K)
            final_hidden_state=torch.from_numpy(final),  # type: ignore[arg-type]  # (B, K)
            attention_mask=mask,  # (B, S)
        )

    __call__ = forward


# --------------------------------------------------------------------------------------------
# The model
# --------------------------------------------------------------------------------------------
def _session_options(num_threads: int | None) -> Any:
    ort = require("onnxruntime")
    options = ort.SessionOptions()
    options.intra_op_num_threads = int(num_threads or torch.get_num_threads())
    options.inter_op_num_threads = 1  # the graphs are chains: no parallel branches worth a second pool
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # generate() runs its glue (argmax, top-k, cat) in torch's thread pool between the ONNX steps. Idle
    # ONNX Runtime workers that spin steal the cores those need: on 2 cores at 2 threads, spinning made
    # batch-1 int8 decoding 3.7x slower than not spinning (and slower than PyTorch).
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


class Seq2SeqAttnOnnxModel(PreTrainedModel, Seq2SeqAttnGenerationMixin):
    """Seq2SeqAttn inference on ONNX Runtime: the PyTorch model's `generate()` over exported graphs.

    Build it with [`from_pretrained`] on a folder written by [`export_onnx`] / `seq2seq-attn export`.
    It holds no torch parameters; `device` is always CPU and `dtype` float32 (the graphs' precision).

    Attributes:
        greedy_loop (`bool`, defaults to `True`): let `generate()` decode plain greedy requests in one ONNX `Loop`
            graph; `False` sends them through `GenerationMixin.generate()` (same ids, more Python).
        beam_loop (`bool`, defaults to `True`): the same for beam search.
    """

    config_class = Seq2SeqAttnConfig
    base_model_prefix = "onnx_model"
    main_input_name = "input_ids"
    _is_stateful = True  # the recurrent state cannot be cropped (assisted decoding fails clearly)

    def __init__(
        self,
        config: Seq2SeqAttnConfig,
        sessions: dict[str, Any],
        manifest: dict,
        int8: bool = False,
        generation_config: GenerationConfig | None = None,
        step_graph: pathlib.Path | None = None,
        session_options: Any = None,
    ):
        super().__init__(config)
        self.sessions = sessions
        self.manifest = manifest
        self.int8 = int8
        self.encoder = Seq2SeqAttnOnnxEncoder(sessions["encoder"], config)
        self.state_names: list[str] = list(manifest["state_names"])
        self.recurrent_state_names: list[str] = list(manifest["recurrent_state_names"])
        self._init_inputs = {node.name for node in sessions["decoder_init"].get_inputs()}
        self._step_outputs = [node.name for node in sessions["decoder_step"].get_outputs()]
        self.greedy_loop = True
        self.beam_loop = True
        # the Loop graphs are composed from this file on first use ([`_loop_session`])
        self._step_graph = step_graph
        self._session_options = session_options
        self._loop_sessions: dict[str, Any] = {}  # GREEDY / BEAM_SEARCH -> session
        self._fallbacks_logged: set[tuple[str, str]] = set()  # (GREEDY or BEAM_SEARCH, reason key)
        if generation_config is not None:
            self.generation_config = generation_config
        self.post_init()

    # ----- loading -----
    @classmethod
    def from_pretrained(  # type: ignore[override]
        cls, folder: str | os.PathLike, int8: bool | None = None, num_threads: int | None = None
    ) -> Seq2SeqAttnOnnxModel:
        """Load a folder written by [`export_onnx`].

        Args:
            folder: the export folder (`onnx_config.json`, `config.json`, the graphs).
            int8 (`bool`, *optional*): `True` runs the int8 graphs, `False` the fp32 ones; `None` (default)
                takes the int8 graphs when the folder has them (exported with `--int8`), else fp32.
            num_threads (`int`, *optional*): ONNX Runtime intra-op threads; defaults to
                `torch.get_num_threads()`.

        Raises:
            `ImportError`: onnxruntime is not installed (the message says how to install it).
            `FileNotFoundError`: `folder` is not an ONNX export folder, or lacks its `config.json` or a graph.
            `ValueError`: `int8=True` for a folder exported without int8 graphs; `num_threads < 1`; a
                tampered or damaged folder: `onnx_config.json` not a valid manifest ([`read_manifest`]), a
                graph path leading outside the folder, a graph file ONNX Runtime cannot load or whose inputs
                and outputs do not match the manifest, or a `config.json` of another model type.
        """
        ort = require("onnxruntime")
        if num_threads is not None and num_threads < 1:
            raise ValueError(
                f"num_threads must be >= 1 (or None for torch's thread count); got {num_threads}."
            )
        path = pathlib.Path(os.path.expanduser(os.fspath(folder)))
        manifest = read_manifest(path)
        config = read_onnx_config(path)
        graphs = manifest["graphs"]
        if int8 is None:
            int8 = "int8" in graphs
        if int8 and "int8" not in graphs:
            raise ValueError(
                f"{str(path)!r} has no int8 graphs; export again with `--int8` (or `export_onnx(..., int8=True)`), "
                "or load with int8=False."
            )
        files = {
            name: graph_path(path, filename) for name, filename in graphs["int8" if int8 else "fp32"].items()
        }
        options = _session_options(num_threads)
        sessions = {name: _open_session(ort, file, options) for name, file in files.items()}
        _check_graph_io(sessions, manifest, path)
        generation_config = _read_generation_config(path)
        return cls(
            config,
            sessions,
            manifest,
            int8=bool(int8),
            generation_config=generation_config,
            step_graph=files["decoder_step"],
            session_options=options,
        )

    # ----- what PreTrainedModel / generate() read -----
    @property
    def device(self) -> torch.device:
        return torch.device("cpu")

    @property
    def dtype(self) -> torch.dtype:
        return torch.float32

    def to(self, *args: Any, **kwargs: Any) -> Seq2SeqAttnOnnxModel:  # type: ignore[override]
        """Only CPU float32 is supported (the sessions use the CPU execution provider)."""
        for value in (*args, *kwargs.values()):
            if isinstance(value, (str, torch.device)) and torch.device(value).type != "cpu":
                raise ValueError(f"{type(self).__name__} runs on the CPU only; got device {value!r}.")
            if isinstance(value, torch.dtype) and value != torch.float32:
                raise ValueError(
                    f"{type(self).__name__} runs the exported float32/int8 graphs; got dtype {value}."
                )
        return self

    def eval(self) -> Seq2SeqAttnOnnxModel:
        return self

    @classmethod
    def _supports_default_dynamic_cache(cls) -> bool:
        # The decoder state is recurrent: [`Seq2SeqAttnOnnxCache`] is built on the first step.
        return False

    def get_encoder(self, *args: Any, **kwargs: Any) -> Seq2SeqAttnOnnxEncoder:  # type: ignore[override]
        return self.encoder

    def init_cache(self, encoder_outputs: Seq2SeqAttnEncoderOutput) -> Seq2SeqAttnOnnxCache:
        """The decoder's initial state from (possibly beam-expanded) encoder outputs."""
        mask = _numpy(encoder_outputs["attention_mask"], bool)
        feeds = {
            "last_hidden_state": _numpy(encoder_outputs["last_hidden_state"], np.float32),
            "final_hidden_state": _numpy(encoder_outputs["final_hidden_state"], np.float32),
            "attention_mask": mask,
        }
        feeds = {name: value for name, value in feeds.items() if name in self._init_inputs}
        values = self.sessions["decoder_init"].run(self.state_names, feeds)
        return Seq2SeqAttnOnnxCache(dict(zip(self.state_names, values, strict=True)), mask)

    def step(
        self, decoder_input_ids: np.ndarray, cache: Seq2SeqAttnOnnxCache
    ) -> tuple[np.ndarray, Seq2SeqAttnOnnxCache, np.ndarray]:
        """One decoder step: ids `(B, 1)` -> logits `(B, 1, V)`, the new cache, attention `(B, N, 1, S)`."""
        feeds = {"decoder_input_ids": decoder_input_ids, "mask": cache.mask, **cache.states}
        outputs = dict(
            zip(self._step_outputs, self.sessions["decoder_step"].run(self._step_outputs, feeds), strict=True)
        )
        states = dict(cache.states)
        for name in self.recurrent_state_names:
            states[name] = outputs[f"next_{name}"]
        new_cache = Seq2SeqAttnOnnxCache(states, cache.mask, cache.seen_tokens + 1, cache.groups)
        return outputs["logits"], new_cache, outputs["attn_weights"]

    def forward(  # type: ignore[override]
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        decoder_input_ids: torch.LongTensor | None = None,
        decoder_attention_mask: torch.Tensor | None = None,
        encoder_outputs: Seq2SeqAttnEncoderOutput | None = None,
        cache: Seq2SeqAttnOnnxCache | None = None,
        use_cache: bool | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs: Any,
    ) -> Seq2SeqLMOutput:
        r"""Encode (unless `encoder_outputs` or a cache is given) and run the decoder over `decoder_input_ids`.

        Arguments as [`Seq2SeqAttnForConditionalGeneration.forward`] (no `labels`: inference only).
        `decoder_input_ids (B, T)` are consumed one step at a time.

        Returns:
            `Seq2SeqLMOutput` with torch `logits (B, T, V)`, `cache` (a [`Seq2SeqAttnOnnxCache`], with
            `use_cache`; named `past_key_values` before transformers 5.24) and, with `output_attentions`,
            `cross_attentions` as a 1-tuple of `(B, N, T, S)`.
        """
        if kwargs.get("labels") is not None:
            raise ValueError(
                f"{type(self).__name__} is for inference; compute losses with the PyTorch model."
            )
        if decoder_input_ids is None:
            raise ValueError("`decoder_input_ids` are required (the start token first).")
        ids = _numpy(decoder_input_ids, np.int64)
        # Every call, generated tokens included: ONNX Runtime's Gather fails obscurely on an id out of range.
        check_token_ids(torch.from_numpy(ids), self.config.resolved_decoder_vocab_size, "decoder_input_ids")
        cache = take_cache(cache, kwargs)  # type: ignore[assignment]
        if cache is None:
            if encoder_outputs is None:
                if input_ids is None:
                    raise ValueError("Pass `input_ids` (the source) or precomputed `encoder_outputs`.")
                encoder_outputs = self.encoder(input_ids, attention_mask)
            source_batch = len(encoder_outputs["last_hidden_state"])
            if source_batch != ids.shape[0]:
                raise ValueError(f"Source batch ({source_batch}) and target batch ({ids.shape[0]}) differ.")
            cache = self.init_cache(encoder_outputs)
        all_logits, all_weights = [], []
        for t in range(ids.shape[1]):
            logits, cache, weights = self.step(ids[:, t : t + 1], cache)
            all_logits.append(logits)
            all_weights.append(weights)
        logits = all_logits[0] if len(all_logits) == 1 else np.concatenate(all_logits, axis=1)  # (B, T, V)
        cross_attentions = None
        if output_attentions:
            cross_attentions = (torch.from_numpy(np.concatenate(all_weights, axis=2)),)  # (B, N, T, S)
        use_cache = use_cache if use_cache is not None else self.config.use_cache
        return Seq2SeqLMOutput(
            logits=torch.from_numpy(logits),
            **{CACHE_NAME: cache if use_cache else None},  # type: ignore[arg-type]
            cross_attentions=cross_attentions,
            encoder_last_hidden_state=None if encoder_outputs is None else encoder_outputs.last_hidden_state,
        )

    # ----- greedy and beam search in one ONNX Loop -----
    def _loop_session(self, kind: str) -> Any:
        """The ONNX Runtime session on the `kind` (GREEDY or BEAM_SEARCH) Loop graph, composed from the step
        graph on first use. Each holds its own copy of the decoder weights."""
        if kind not in self._loop_sessions:
            onnx = require("onnx")
            ort = require("onnxruntime")
            step = onnx.load(str(self._step_graph))
            build = build_beam_graph if kind == BEAM_SEARCH else build_greedy_graph
            graph = build(step, self.recurrent_state_names)
            self._loop_sessions[kind] = ort.InferenceSession(
                graph.SerializeToString(), self._session_options, providers=["CPUExecutionProvider"]
            )
        return self._loop_sessions[kind]

    def _greedy_generate(self, request: GreedyRequest) -> torch.Tensor | GenerateEncoderDecoderOutput:
        """What `generate()` returns for `request`: ids `(B, 1 + T)`, or (with `return_dict`) them and the cache."""
        encoder_outputs = self.encoder(request.input_ids, request.attention_mask)  # the source checks
        cache = self.init_cache(encoder_outputs)
        feeds = {
            "decoder_input_ids": np.full((cache.mask.shape[0], 1), request.decoder_start_token_id, np.int64),
            "mask": cache.mask,
            **cache.states,
            "max_new_tokens": np.array(request.max_new_tokens, np.int64),
            "eos_token_id": request.eos_token_id,
            "pad_token_id": np.array(request.pad_token_id, np.int64),
        }
        final_names = [f"next_{name}" for name in self.recurrent_state_names]
        sequences, *final = self._loop_session(GREEDY).run([GREEDY_OUTPUT, *final_names], feeds)
        if not request.return_dict:
            return torch.from_numpy(sequences)
        final_cache = None
        if request.use_cache:
            states = {**cache.states, **dict(zip(self.recurrent_state_names, final, strict=True))}
            final_cache = Seq2SeqAttnOnnxCache(states, cache.mask, seen_tokens=sequences.shape[1] - 1)
        return GenerateEncoderDecoderOutput(
            sequences=torch.from_numpy(sequences),  # type: ignore[arg-type]
            **{CACHE_NAME: final_cache},  # type: ignore[arg-type]  # the name depends on the transformers version
        )

    def _beam_generate(self, request: BeamRequest) -> torch.Tensor | GenerateBeamEncoderDecoderOutput:
        """What `generate()` returns for `request`: ids `(B * R, 1 + T)`, or (with `return_dict`) them, their
        scores and beam indices, the per-step scores / logits asked for, and the running beams' cache."""
        encoder_outputs = self.encoder(request.input_ids, request.attention_mask)  # the source checks
        # generate()'s `_expand_inputs_for_generation`: row b * K + k is beam k of source b; the initial state
        # is computed on the expanded rows, as generate() computes it
        expanded = Seq2SeqAttnEncoderOutput(
            **{
                name: value.repeat_interleave(request.num_beams, dim=0)
                for name, value in encoder_outputs.items()
            }
        )
        cache = self.init_cache(expanded)
        rows = cache.mask.shape[0]
        feeds = {
            "decoder_input_ids": np.full((rows, 1), request.decoder_start_token_id, np.int64),
            "mask": cache.mask,
            **cache.states,
            "num_beams": np.array(request.num_beams, np.int64),
            "num_return_sequences": np.array(request.num_return_sequences, np.int64),
            "max_new_tokens": np.array(request.max_new_tokens, np.int64),
            "fill_token_id": np.array(request.fill_token_id, np.int64),
            "min_new_tokens": np.array(request.min_new_tokens, np.int64),
            "eos_token_id": request.eos_token_id,
            "length_divisors": request.length_divisors,
            "heuristic_divisors": request.heuristic_divisors,
            "early_stopping": np.array(request.early_stopping),
            "score_rows": np.array([rows if request.output_scores else 0], np.int64),
            "logit_rows": np.array([rows if request.output_logits else 0], np.int64),
        }
        names = [*BEAM_OUTPUTS, *(f"next_{name}" for name in self.recurrent_state_names)]
        out = dict(zip(names, self._loop_session(BEAM_SEARCH).run(names, feeds), strict=True))
        sequences = torch.from_numpy(out["sequences"])
        if not request.return_dict:
            return sequences
        final_cache = None
        if request.use_cache:
            final = {name: out[f"next_{name}"] for name in self.recurrent_state_names}
            final_cache = Seq2SeqAttnOnnxCache(
                {**cache.states, **final}, cache.mask, seen_tokens=int(out["steps"])
            )
        # `_beam_search` returns the hypotheses' scores only with `output_scores`; the per-step scores and
        # logits are `(BK, V)` per iteration
        scores = logits = sequences_scores = None
        if request.output_scores:
            sequences_scores = torch.from_numpy(out["sequences_scores"])
            scores = tuple(torch.from_numpy(out["step_scores"]).unbind(0))
        if request.output_logits:
            logits = tuple(torch.from_numpy(out["step_logits"]).unbind(0))
        return GenerateBeamEncoderDecoderOutput(
            sequences=sequences,  # type: ignore[arg-type]
            sequences_scores=sequences_scores,
            scores=scores,  # type: ignore[arg-type]
            logits=logits,  # type: ignore[arg-type]
            beam_indices=torch.from_numpy(out["beam_indices"]),  # type: ignore[arg-type]
            **{CACHE_NAME: final_cache},  # type: ignore[arg-type]  # the name depends on the transformers version
        )

    def _loop_plan(
        self, inputs: Any, generation_config: Any, kwargs: dict[str, Any]
    ) -> GreedyRequest | BeamRequest | None:
        """The request when a Loop graph serves this call; else None, having logged the reason (once per
        reason)."""
        if self._step_graph is None or not (self.greedy_loop or self.beam_loop):
            return None
        kind, plan = loop_request(self, inputs, generation_config, kwargs)
        if not (self.greedy_loop if kind == GREEDY else self.beam_loop):
            return None
        if (
            isinstance(plan, (GreedyRequest, BeamRequest))
            and kind not in self._loop_sessions
            and importlib.util.find_spec("onnx") is None
        ):
            plan = "onnx", "the `onnx` package, which composes the Loop graph, is not installed"
        if isinstance(plan, (GreedyRequest, BeamRequest)):
            return plan
        key, message = plan
        if (kind, key) not in self._fallbacks_logged:
            self._fallbacks_logged.add((kind, key))
            logger.info("Not the %s ONNX Loop (%s): decoding with GenerationMixin.generate().", kind, message)
        return None

    @torch.no_grad()
    def generate(  # type: ignore[override]
        self,
        inputs: torch.Tensor | None = None,
        generation_config: GenerationConfig | None = None,
        **kwargs: Any,
    ):
        """`GenerationMixin.generate`, with plain greedy search and beam search run in one ONNX `Loop` graph
        (same ids, see the module docstring); no autograd bookkeeping, the returned ids are ordinary tensors."""
        request = self._loop_plan(inputs, generation_config, kwargs)
        if isinstance(request, BeamRequest):
            return self._beam_generate(request)
        if isinstance(request, GreedyRequest):
            return self._greedy_generate(request)
        return super().generate(inputs, generation_config, **kwargs)  # type: ignore[misc]


def load_onnx_model_and_tokenizer(
    folder: str | os.PathLike, int8: bool | None = None, num_threads: int | None = None
) -> tuple[Seq2SeqAttnOnnxModel, Any]:
    """`(Seq2SeqAttnOnnxModel.from_pretrained(folder, ...), tokenizer)` from an export folder.

    Raises `FileNotFoundError` when the folder has no tokenizer (export with `tokenizer=` or from the CLI).
    """
    from ..core.tokenization_seq2seq_attn import load_tokenizer

    model = Seq2SeqAttnOnnxModel.from_pretrained(folder, int8=int8, num_threads=num_threads)
    return model, load_tokenizer(os.fspath(folder))


__all__ = [
    "Seq2SeqAttnOnnxCache",
    "Seq2SeqAttnOnnxEncoder",
    "Seq2SeqAttnOnnxModel",
    "load_onnx_model_and_tokenizer",
]
