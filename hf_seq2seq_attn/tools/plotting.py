"""Attention heatmaps (source tokens across, output tokens down), one panel per head.

matplotlib is imported inside `plot_attention` only, so importing this package never needs it, and
figures are built with the object API (`matplotlib.figure.Figure`), which needs no GUI backend and
leaves pyplot's global state alone.
"""

from __future__ import annotations

import logging
import math
import os
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from matplotlib.figure import Figure

logger = logging.getLogger(__name__)

MAX_PANEL_COLUMNS = 4


def _to_numpy(weights: Any) -> np.ndarray:
    """Convert a torch tensor (any device / dtype, grad or not) or array-like to a float numpy array."""
    if hasattr(weights, "detach"):  # torch.Tensor, without importing torch here
        weights = weights.detach().float().cpu().numpy()
    return np.asarray(weights, dtype=np.float64)


def _as_heads(weights: np.ndarray) -> np.ndarray:
    """Return weights as (N, T, S), adding a head axis to a single (T, S) map."""
    if weights.ndim == 2:
        return weights[None]  # (1, T, S)
    if weights.ndim == 3:
        return weights
    raise ValueError(
        f"`weights` must have shape (T, S) or (N, T, S) (N heads, T output tokens, S source tokens), "
        f"got shape {tuple(weights.shape)}. For a batch, plot one example at a time, e.g. weights[0]."
    )


def _check_token_counts(heads: np.ndarray, source_tokens: list[str], target_tokens: list[str]) -> None:
    """Raise `ValueError` naming the axis whose length disagrees with its token list."""
    num_heads, num_targets, num_sources = heads.shape
    if 0 in heads.shape:
        raise ValueError(f"`weights` of shape (N, T, S)={heads.shape} is empty; there is nothing to plot.")
    if num_targets != len(target_tokens):
        raise ValueError(
            f"`weights` has {num_targets} rows (output/target dimension T) but {len(target_tokens)} "
            "target_tokens were given; pass one label per generated token."
        )
    if num_sources != len(source_tokens):
        raise ValueError(
            f"`weights` has {num_sources} columns (source dimension S) but {len(source_tokens)} "
            "source_tokens were given; pass one label per source token (padding included or trimmed "
            "from both)."
        )


def _escape(token: str) -> str:
    """Escape `$` so that tokens are never parsed as mathtext."""
    return token.replace("$", r"\$")


def plot_attention(
    weights: Any,
    source_tokens: list[str],
    target_tokens: list[str],
    path: str | None = None,
    title: str | None = None,
) -> Figure:
    """Draw attention weights as heatmaps, one panel per head, with a shared colour bar.

    Args:
        weights (`np.ndarray` or `torch.Tensor` of shape `(T, S)` or `(N, T, S)`):
            Attention of each output token (rows) over the source tokens (columns), for N heads.
        source_tokens (`list[str]`): S labels for the x axis.
        target_tokens (`list[str]`): T labels for the y axis.
        path (`str`, *optional*):
            Where to save the figure; the format follows the extension (PNG when there is none).
        title (`str`, *optional*): figure title; with several heads each panel is also titled "head i".

    Returns:
        `matplotlib.figure.Figure`: the figure (not registered with pyplot, so no `plt.close` needed).
    """
    from matplotlib.figure import Figure

    heads = _as_heads(_to_numpy(weights))  # (N, T, S)
    _check_token_counts(heads, source_tokens, target_tokens)
    num_heads, num_targets, num_sources = heads.shape

    num_columns = min(num_heads, MAX_PANEL_COLUMNS)
    num_rows = math.ceil(num_heads / num_columns)
    panel_width = 1.5 + 0.3 * max(num_sources, 4)
    panel_height = 1.5 + 0.3 * max(num_targets, 4)
    figure = Figure(figsize=(panel_width * num_columns + 1.0, panel_height * num_rows), layout="constrained")
    axes = figure.subplots(num_rows, num_columns, squeeze=False).ravel()
    for extra_axis in axes[num_heads:]:
        extra_axis.remove()

    # One colour scale for all heads so that panels can be compared.
    vmin, vmax = min(0.0, float(np.nanmin(heads))), float(np.nanmax(heads))
    images = []
    for head, axis in enumerate(axes[:num_heads]):
        image = axis.imshow(heads[head], cmap="viridis", vmin=vmin, vmax=vmax, aspect="auto")
        axis.set_xticks(range(num_sources), labels=[_escape(t) for t in source_tokens], rotation=90)
        axis.set_yticks(range(num_targets), labels=[_escape(t) for t in target_tokens])
        axis.set_xlabel("source")
        axis.set_ylabel("output")
        if num_heads > 1:
            axis.set_title(f"head {head}")
        elif title is not None:
            axis.set_title(title)
        images.append(image)
    if num_heads > 1 and title is not None:
        figure.suptitle(title)
    figure.colorbar(images[0], ax=list(axes[:num_heads]), label="attention weight")

    if path is not None:
        directory = os.path.dirname(path)
        if directory:
            os.makedirs(directory, exist_ok=True)
        # An explicit format stops matplotlib from appending ".png" to an extension-less path.
        file_format = None if os.path.splitext(path)[1] else "png"
        figure.savefig(path, format=file_format, dpi=100)
        logger.info("Saved attention plot to %s", path)
    return figure
