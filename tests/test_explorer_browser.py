"""The attention explorer in a real browser: headless Chromium from the system packages, driven by Selenium.

Needs `pip install 'hf_seq2seq_attn[app]' selenium` and `apt-get install chromium chromium-driver`
(/usr/bin/chromium, /usr/bin/chromedriver); nothing is downloaded at run time (the driver path is given
explicitly, so Selenium Manager never runs). Skipped when any of them is missing.
"""

from __future__ import annotations

import json
import os
import re
import time

import browser_helpers
import pytest
from browser_helpers import (
    click_label,
    css,
    free_port,
    heatmap,
    heatmap_at,
    pick_dropdown,
    set_source,
    start_app,
    text_of,
    wait_for,
)
from tiny_inference_model import save_tiny_model

pytestmark = pytest.mark.slow
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # before anything imports gradio: no phoning home

SPANISH = "el gato negro come"


def make_driver():
    """[`browser_helpers.make_driver`], skipping the test where Selenium or Chromium is missing."""
    try:
        return browser_helpers.make_driver()
    except browser_helpers.BrowserMissing as err:
        pytest.skip(str(err))


def translate(driver, previous_caption: str | None = None) -> None:
    """Click Translate and wait until both columns show a (new) heat-map."""
    for column in (0, 1):
        driver.execute_script(
            "const t = document.querySelector(arguments[0] + ' table.s2sa-table'); if (t) t.remove();",
            f"#s2sa-heatmap-{column}",
        )
    css(driver, "#s2sa-translate")[0].click()
    for column in (0, 1):
        wait_for(driver, lambda d, c=column: heatmap(d, c) is not None, f"no heat-map in column {column}")


def external_requests(driver) -> list[str]:
    """URLs the page requested from anywhere but the app's own server."""
    urls = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            url = message["params"]["request"]["url"]
            if url.startswith(("http:", "https:", "ws:", "wss:")) and not re.match(
                r"^(https?|wss?)://(127\.0\.0\.1|localhost)(:\d+)?/", url
            ):
                urls.append(url)
    return urls


# ----- the test ----------------------------------------------------------------------------
@pytest.fixture
def two_models(tmp_path):
    """A single-head and a two-head tiny model; short maximum source length so a long paste is quick."""
    from hf_seq2seq_attn.explorer import load_model

    paths = [
        save_tiny_model(tmp_path / "additive"),
        save_tiny_model(tmp_path / "two_heads", num_attention_heads=2, attention_size=16),
    ]
    for path in paths:  # what `train.py --max_source_length 24` would have stored with the tokenizer
        config_file = os.path.join(path, "tokenizer_config.json")
        with open(config_file, encoding="utf-8") as handle:
            config = json.load(handle)
        config["model_max_length"] = 24
        with open(config_file, "w", encoding="utf-8") as handle:
            json.dump(config, handle)
    return paths, [load_model(path) for path in paths]


def check_greedy_translation(driver, loaded) -> None:
    """Greedy translation of a Spanish sentence, in both columns: one heat-map row per output token, and
    the coverage row under it."""
    from hf_seq2seq_attn.explorer import explore

    set_source(driver, SPANISH)
    translate(driver)
    for column, (model, tokenizer) in enumerate(loaded):
        expected = explore(model, tokenizer, SPANISH).hypotheses[0]
        shown = heatmap(driver, column)
        assert shown["rows"] == expected.tokens  # one row per output token
        assert shown["cols"] == tokenizer.convert_ids_to_tokens(tokenizer(SPANISH)["input_ids"])
        assert shown["cells"] == len(expected.tokens) * len(shown["cols"])
        assert expected.text in text_of(driver, f"#s2sa-nbest-{column}")
        check_coverage(driver, f"#s2sa-heatmap-{column}", expected.attention.mean(axis=0))


def check_hover_tip(driver) -> None:
    """Hovering a cell shows its source token, output token and weight; nothing shows before."""
    from selenium.webdriver.common.action_chains import ActionChains

    cell = css(driver, "#s2sa-heatmap-0 tbody tr:nth-child(2) td:nth-of-type(3)")[0]  # row 1, column 2
    tip = "return getComputedStyle(arguments[0], '::after').getPropertyValue('content')"
    ActionChains(driver).move_to_element(css(driver, "#s2sa-source textarea")[0]).perform()
    assert driver.execute_script(tip, cell) in ("none", "normal", "")  # hidden until hovered
    ActionChains(driver).move_to_element(cell).perform()
    wait_for(driver, lambda d: d.execute_script(tip, cell) not in ("none", "normal", ""), "no tip")
    shown_tip = driver.execute_script(tip, cell)
    rows, cols = heatmap(driver, 0)["rows"], heatmap(driver, 0)["cols"]
    weight = float(cell.get_attribute("style").split("--w:")[1].rstrip(";"))
    assert shown_tip.strip('"') == f"{rows[1]} ← {cols[2]}: {weight:.3f}"


def check_beam_search(driver, loaded) -> None:
    """Beam search: the n-best list, and a lower hypothesis' own attention."""
    from hf_seq2seq_attn.explorer import explore

    click_label(driver, "#s2sa-mode", "beam search")
    translate(driver)
    model, tokenizer = loaded[0]
    beams = explore(model, tokenizer, SPANISH, num_beams=5).hypotheses
    wait_for(driver, lambda d: len(css(d, "#s2sa-nbest-0 input[type=radio]")) == 5, "no 5-best list")
    css(driver, "#s2sa-nbest-0 input[type=radio]")[2].click()
    wait_for(
        driver, lambda d: (heatmap(d, 0) or {}).get("caption", "").startswith("Hypothesis 3"), "no hyp 3"
    )
    assert heatmap(driver, 0)["rows"] == beams[2].tokens
    check_coverage(driver, "#s2sa-heatmap-0", beams[2].attention[0])


def check_beam_tree(driver, loaded) -> None:
    """The "Beam search tree" box of the beam-5 translation: the same kept and pruned nodes as computed
    here; a click on the leaf of hypothesis 3 draws its heat-map under the tree."""
    from hf_seq2seq_attn.explorer import explore

    model, tokenizer = loaded[0]
    exploration = explore(model, tokenizer, SPANISH, num_beams=5)
    expected = sorted(
        (node.step, node.token_id, int(node.kept), node.beam, f"{node.score:.6f}")
        for node in exploration.beam_tree.nodes
    )
    read = """
        return [...document.querySelectorAll(arguments[0] + ' g.s2sa-node')].map(g => [
          Number(g.dataset.step), Number(g.dataset.tokenId), Number(g.dataset.kept), Number(g.dataset.beam),
          g.dataset.score]);"""
    wait_for(driver, lambda d: d.execute_script(read, "#s2sa-beamtree-0"), "no beam search tree")
    shown = sorted(tuple(node) for node in driver.execute_script(read, "#s2sa-beamtree-0"))
    assert shown == expected
    assert {kept for _, _, kept, _, _ in shown} == {0, 1}  # kept and pruned nodes both drawn
    leaf = css(driver, "#s2sa-beamtree-0 g.s2sa-leaf[data-hypothesis='2']")[0]
    assert float(leaf.get_attribute("data-final-score")) == pytest.approx(
        exploration.hypotheses[2].score, abs=1e-5
    )
    leaf.click()
    wait_for(
        driver,
        lambda d: (
            (heatmap_at(d, "#s2sa-beamtree-heatmap-0") or {})
            .get("caption", "")
            .startswith("Leaf: hypothesis 3")
        ),
        "no heat-map for the clicked leaf",
    )
    assert heatmap_at(driver, "#s2sa-beamtree-heatmap-0")["rows"] == exploration.hypotheses[2].tokens
    check_coverage(driver, "#s2sa-beamtree-heatmap-0", exploration.hypotheses[2].attention[0])
    on_path = "#s2sa-beamtree-0 g.s2sa-on-path"
    assert css(driver, on_path)[-1].get_attribute("data-hypothesis") == "2"  # its path is highlighted


def coverage_and_matrix(driver, selector: str) -> dict:
    """The coverage row of the heat-map in `selector` (exact values, shown text) and the weights its cells
    show in their tips (3 decimals), as a (T, S) list of rows."""
    return driver.execute_script(
        """
        const table = document.querySelector(arguments[0] + ' table.s2sa-table');
        const cells = [...table.querySelectorAll('tfoot td.s2sa-cov')];
        return {
          values: cells.map(e => parseFloat(e.dataset.coverage)),
          shown: cells.map(e => e.textContent),
          matrix: [...table.querySelectorAll('tbody tr')].map(
            row => [...row.querySelectorAll('td')].map(e => parseFloat(e.dataset.tip.split(': ').pop()))),
        };""",
        selector,
    )


def check_coverage(driver, selector: str, expected_matrix) -> None:
    """The coverage row: one cell per source token, each the sum of its column of the matrix the page shows."""
    import numpy as np

    found = coverage_and_matrix(driver, selector)
    shown = np.array(found["matrix"])  # (T, S), each weight rounded to 3 decimals
    assert len(found["values"]) == shown.shape[1] == expected_matrix.shape[1]
    # the page's own cells: T weights rounded by at most 5e-4 each
    np.testing.assert_allclose(found["values"], shown.sum(axis=0), atol=5e-4 * shown.shape[0] + 1e-6, rtol=0)
    np.testing.assert_allclose(found["values"], expected_matrix.sum(axis=0), atol=1e-5, rtol=0)
    assert found["shown"] == [f"{value:.2f}" for value in found["values"]]


def check_whatif(driver, loaded) -> None:
    """Replace output token 2 of the greedy translation by its second most probable alternative and
    re-decode: the page shows generate() with that forced prefix, and its heat-map."""
    import torch

    from hf_seq2seq_attn.explorer import alternative_choices, explore
    from hf_seq2seq_attn.explorer.whatif import redecode, top_alternatives

    model, tokenizer = loaded[0]
    exploration = explore(model, tokenizer, SPANISH)
    token_ids = exploration.hypotheses[0].token_ids
    alternatives = top_alternatives(model, tokenizer, exploration.source_ids, token_ids, 1)
    chosen = alternatives[1]  # greedy: alternatives[0] is the original token
    label = alternative_choices(alternatives, token_ids[1])[1][0]
    prefix = [model.config.decoder_start_token_id, token_ids[0], chosen.token_id]
    source = torch.tensor([exploration.source_ids])
    generated = model.generate(
        input_ids=source,
        decoder_input_ids=torch.tensor([prefix]),
        num_beams=1,
        do_sample=False,
        max_new_tokens=2 * source.shape[1] + 10 - 2,  # the forced tokens count towards the budget
    )[0, 1:].tolist()
    expected_text = tokenizer.decode(generated, skip_special_tokens=True)

    pick_dropdown(driver, "#s2sa-whatif-position-0", f"2. {exploration.hypotheses[0].tokens[1]}")
    wait_for(
        driver,
        lambda d: len(css(d, "#s2sa-whatif-token-0 input[type=radio]")) == len(alternatives),
        "no top-k",
    )
    click_label(driver, "#s2sa-whatif-token-0", label)
    css(driver, "#s2sa-redecode-0")[0].click()
    wait_for(
        driver, lambda d: text_of(d, "#s2sa-whatif-result-0 .s2sa-whatif-text") or None, "no re-decoding"
    )
    assert text_of(driver, "#s2sa-whatif-result-0 .s2sa-whatif-text") == expected_text
    ids = css(driver, "#s2sa-whatif-result-0 .s2sa-whatif")[0].get_attribute("data-ids")
    assert [int(i) for i in ids.split()] == generated
    assert heatmap_at(driver, "#s2sa-whatif-heatmap-0")["rows"] == tokenizer.convert_ids_to_tokens(generated)
    redecoded = redecode(model, tokenizer, exploration.source_ids, token_ids, 1, chosen.token_id)
    check_coverage(driver, "#s2sa-whatif-heatmap-0", redecoded.attention.mean(axis=0))


def check_bad_input(driver) -> None:
    """Empty text gets a message; a 10,000-character paste is clipped to the model's 24 tokens."""
    set_source(driver, "")
    css(driver, "#s2sa-translate")[0].click()
    wait_for(driver, lambda d: "Type a sentence" in text_of(d, "#s2sa-status-0"), "no message for empty text")
    click_label(driver, "#s2sa-mode", "greedy")
    set_source(driver, ("hola mundo " * 1000)[:10_000])
    translate(driver)
    wait_for(driver, lambda d: "at most 24" in text_of(d, "#s2sa-status-0"), "no truncation notice")
    assert len(heatmap(driver, 0)["cols"]) == 24


PATH_BOX = "#s2sa-path-0 textarea, #s2sa-path-0 input"


def check_bad_models(driver, tmp_path) -> None:
    """Bad models loaded from the page (a missing folder, another architecture) say why in the column."""
    from selenium.webdriver.common.keys import Keys

    other = tmp_path / "bert"
    other.mkdir()
    (other / "config.json").write_text(json.dumps({"model_type": "bert"}))
    click_label(driver, "#s2sa-model-0", "Load another model")
    for path, message in (
        (str(tmp_path / "missing"), "No model folder"),
        (str(other), "not a 'seq2seq_attn'"),
    ):
        # The path box appears once the server answers the click: wait for it (a busy machine is slow).
        box = wait_for(driver, lambda d: css(d, PATH_BOX), "no path box")[0]
        box.send_keys(Keys.CONTROL, "a")
        box.send_keys(Keys.BACKSPACE)
        box.send_keys(path)
        css(driver, "#s2sa-load-0")[0].click()
        wait_for(driver, lambda d, m=message: m in text_of(d, "#s2sa-status-0"), f"no message: {message}")


def test_explorer_in_a_real_browser(two_models, tmp_path):
    pytest.importorskip("gradio")
    from hf_seq2seq_attn.explorer import explore

    paths, loaded = two_models
    port = free_port()
    demo = start_app(paths, port)
    driver = make_driver()
    try:
        driver.get(f"http://127.0.0.1:{port}/")
        wait_for(driver, lambda d: css(d, "#s2sa-source textarea"), "the page did not render")
        assert "Attention explorer" in driver.title or "explorer" in driver.page_source
        assert "formula table" in text_of(driver, "#s2sa-formula-1")
        check_greedy_translation(driver, loaded)
        driver.save_screenshot(str(tmp_path / "greedy.png"))
        check_hover_tip(driver)
        driver.save_screenshot(str(tmp_path / "hover.png"))
        check_whatif(driver, loaded)
        driver.save_screenshot(str(tmp_path / "whatif.png"))
        check_beam_search(driver, loaded)
        check_beam_tree(driver, loaded)
        driver.save_screenshot(str(tmp_path / "beam_tree.png"))
        click_label(driver, "#s2sa-head-1", "head 2")  # the head selector of the two-head model
        wait_for(driver, lambda d: "head 2" in (heatmap(d, 1) or {}).get("caption", ""), "head 2 not shown")
        check_bad_input(driver)
        check_bad_models(driver, tmp_path)

        # The page is still alive: the first model still translates.
        set_source(driver, SPANISH)
        translate(driver)
        assert heatmap(driver, 0)["rows"] == explore(*loaded[0], SPANISH).hypotheses[0].tokens
        time.sleep(0.5)
        driver.save_screenshot(str(tmp_path / "explorer.png"))
        assert not any(driver.find_elements("css selector", ".toast-body.error"))
        assert external_requests(driver) == []  # everything the page needs comes from the app itself
    finally:
        driver.save_screenshot(str(tmp_path / "last.png"))  # the state at the end, also after a failure
        driver.quit()
        demo.close()


NEIGHBOR_PAIRS = [
    ("el gato negro come", "the black cat eats"),
    ("hola mundo", "hello world"),
    ("el perro come", "the dog eats"),
    ("buenos dias amigo", "good morning friend"),
    ("gracias", "thanks"),
    ("el gato come hola", "the cat eats hello"),
]


def first_neighbor(driver) -> str | None:
    """The source sentence of the first entry of the first column's neighbour list (None when empty)."""
    found = css(driver, "#s2sa-neighbors-0 li.s2sa-neighbor .s2sa-neighbor-source")
    return found[0].text if found else None


def expected_token_neighbors(model_folder: str, train: str, source: str) -> list[tuple[str, int]]:
    """What the decoder-state lists should show for `source`: greedy `generate()`'s output tokens, each
    with its nearest training token (`source` of the pair, position), from the cached index."""
    import torch

    from hf_seq2seq_attn.explorer import load_model, load_or_build_index, nearest_tokens
    from hf_seq2seq_attn.explorer.neighbors import source_ids

    model, tokenizer = load_model(model_folder)
    index = load_or_build_index(model_folder, model, tokenizer, train)
    ids = source_ids(tokenizer, [source])[0]
    with torch.no_grad():
        output = model.generate(
            torch.tensor([ids]), num_beams=1, do_sample=False, max_new_tokens=2 * len(ids) + 10
        )
        output = output[0, 1:].tolist()  # the page's default length: explore()'s 2 S + 10
    pad = model.config.pad_token_id
    output = [token for token in output if token != pad]
    return [(n[0].source, n[0].position) for n in nearest_tokens(model, index, ids, output, k=1)]


def test_nearest_training_sentences_in_a_real_browser(tmp_path, monkeypatch):
    """With a training file given to the app builder, a sentence copied from it is the first neighbour, and
    each output token opens the training tokens nearest in decoder state."""
    pytest.importorskip("gradio")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    model = save_tiny_model(tmp_path / "model")
    train = tmp_path / "train.jsonl"
    train.write_text("".join(json.dumps({"source": s, "target": t}) + "\n" for s, t in NEIGHBOR_PAIRS))
    port = free_port()
    demo = start_app([model], port, neighbors=str(train))
    assert (tmp_path / "model" / "explorer_neighbors").is_dir()  # built before the page was served
    driver = make_driver()
    try:
        driver.get(f"http://127.0.0.1:{port}/")
        wait_for(driver, lambda d: css(d, "#s2sa-source textarea"), "the page did not render")
        for source, target in (NEIGHBOR_PAIRS[2], NEIGHBOR_PAIRS[5]):
            set_source(driver, source)
            css(driver, "#s2sa-translate")[0].click()
            wait_for(
                driver, lambda d, s=source: first_neighbor(d) == s, f"{source!r} is not the first neighbour"
            )
            first = css(driver, "#s2sa-neighbors-0 li.s2sa-neighbor")[0]
            assert target in first.text and first.text.startswith("1.000")
            assert len(css(driver, "#s2sa-neighbors-0 li.s2sa-neighbor")) == 5
            expected = expected_token_neighbors(model, str(train), source)
            tokens = css(driver, "#s2sa-neighbors-0 details.s2sa-token")
            assert len(tokens) == len(expected) == len(heatmap(driver, 0)["rows"])  # one per output token
            last = tokens[-1]
            assert not last.find_elements("css selector", "li.s2sa-token-neighbor")[0].is_displayed()
            last.find_element("css selector", "summary").click()  # opens its list
            items = last.find_elements("css selector", "li.s2sa-token-neighbor")
            wait_for(driver, lambda d, i=items: i[0].is_displayed(), "the token's list did not open")
            assert len(items) == 3
            shown = items[0].find_element("css selector", ".s2sa-neighbor-source").text
            assert (shown, int(items[0].get_attribute("data-position"))) == expected[-1]
        driver.save_screenshot(str(tmp_path / "neighbors.png"))
        assert not any(driver.find_elements("css selector", ".toast-body.error"))
    finally:
        driver.quit()
        demo.close()
