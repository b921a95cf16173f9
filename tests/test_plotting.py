"""Attention heatmaps: files written, one panel per head, helpful shape errors."""

import numpy as np
import pytest
import torch

from hf_seq2seq_attn.tools.plotting import plot_attention

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
SOURCE = ["el", "principio", "$", "</s>"]
TARGET = ["in", "the", "beginning", "</s>", "<pad>"]


def _heatmap_axes(figure):
    """Axes that show a heatmap (the colour bar axis holds no image)."""
    return [axis for axis in figure.axes if axis.get_images() and axis.get_xlabel() == "source"]


def test_single_map_writes_png(tmp_path):
    weights = np.random.default_rng(0).dirichlet(np.ones(len(SOURCE)), size=len(TARGET))  # (T, S)
    path = tmp_path / "attention.png"
    figure = plot_attention(weights, SOURCE, TARGET, path=str(path), title="example")
    data = path.read_bytes()
    assert data.startswith(PNG_SIGNATURE)
    assert len(data) > 1000
    (axis,) = _heatmap_axes(figure)
    assert axis.get_title() == "example"
    assert [label.get_text() for label in axis.get_xticklabels()] == ["el", "principio", r"\$", "</s>"]
    assert [label.get_text() for label in axis.get_yticklabels()] == TARGET
    np.testing.assert_allclose(axis.get_images()[0].get_array(), weights)
    assert len(figure.axes) == 2  # heatmap + colour bar


@pytest.mark.parametrize("num_heads", [1, 3, 6])
def test_one_panel_per_head_from_torch(num_heads):
    weights = torch.softmax(torch.randn(num_heads, len(TARGET), len(SOURCE), requires_grad=True), dim=-1)
    figure = plot_attention(weights, SOURCE, TARGET)
    panels = _heatmap_axes(figure)
    assert len(panels) == num_heads
    if num_heads > 1:
        assert [axis.get_title() for axis in panels] == [f"head {i}" for i in range(num_heads)]
        np.testing.assert_allclose(
            panels[-1].get_images()[0].get_array(), weights[-1].detach().numpy(), rtol=1e-6
        )


def test_path_without_extension_is_png_and_parent_is_created(tmp_path):
    path = tmp_path / "plots" / "attention"
    plot_attention(np.eye(3), ["a", "b", "c"], ["x", "y", "z"], path=str(path))
    assert path.read_bytes().startswith(PNG_SIGNATURE)


def test_no_pyplot_figure_is_left_open():
    import matplotlib.pyplot as plt

    before = plt.get_fignums()
    plot_attention(np.eye(2), ["a", "b"], ["x", "y"])
    assert plt.get_fignums() == before


@pytest.mark.parametrize(
    ("shape", "pattern"),
    [
        ((len(TARGET) + 1, len(SOURCE)), "6 rows .* 5 target_tokens"),
        ((len(TARGET), len(SOURCE) - 1), "3 columns .* 4 source_tokens"),
        ((2, len(TARGET), len(SOURCE) + 2), "source dimension S"),
        ((len(SOURCE),), r"\(T, S\) or \(N, T, S\)"),
        ((1, 2, len(TARGET), len(SOURCE)), "one example at a time"),
        ((0, len(TARGET), len(SOURCE)), "empty"),
    ],
)
def test_shape_mismatch_raises(shape, pattern):
    with pytest.raises(ValueError, match=pattern):
        plot_attention(np.zeros(shape), SOURCE, TARGET)
