#!/usr/bin/env python
"""The explorer's README figures, measured in a real browser: click-to-drawn-view times and the screenshot.

    python tests/explorer_figures.py --model outputs/bible --screenshot model_cards/explorer.png

A measuring tool beside the browser helpers it shares with the tests (not a test: pytest does not collect it).

Serves the page from this process (one model, `--threads` torch threads) and drives headless Chromium (`pip install selenium`,
`apt-get install chromium chromium-driver`; see browser_helpers.py). Each time is measured inside the
browser (`performance.now()`), from the click until what it asked for is drawn, the old drawing removed
first; two sentences alternate so every click draws something new. Printed as medians of `--repeats`:

- Translate, greedy and beam search: until the heat-map of the new sentence is in the page, and with beam
  search its tree too (both come from the same click: the tree is drawn by a follow-up event);
- Re-decode (what if): from the click until the re-decoded translation and its heat-map are drawn;
- with `--neighbors FILE`: from the Translate click until the neighbour lists are drawn.

The screenshot shows `--screenshot_sentence` translated with beam search and its tree, the model named as
given to `--model` (run it from beside the folder so no absolute path appears).
"""

from __future__ import annotations

import argparse
import base64
import os
import statistics
import time
from pathlib import Path

import torch

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

from browser_helpers import (  # noqa: E402
    click_label,
    css,
    free_port,
    make_driver,
    open_dropdown,
    set_source,
    start_app,
    wait_for,
)

# Two 30-word verses of the bundled test split (Genesis 42:6 and Exodus 3:7).
SENTENCES = (
    "Y José era el señor de la tierra, que vendía á todo el pueblo de la tierra: y llegaron los hermanos "
    "de José, é inclináronse á él rostro por tierra.",
    "Y dijo Jehová: Bien he visto la aflicción de mi pueblo que está en Egipto, y he oído su clamor á causa "
    "de sus exactores; pues tengo conocidas sus angustias:",
)
SCREENSHOT_SENTENCE = "Y dijo Dios: Sea la luz: y fué la luz."

# Runs in the page: remove the old drawing, click, and call back with the milliseconds until each selector of
# arguments[1] first matches again (polled every 2 ms), once all do.
TIMED_CLICK = """
const [button, selectors, done] = arguments;
for (const selector of selectors) document.querySelectorAll(selector).forEach((e) => e.remove());
const start = performance.now();
const seen = {};
document.querySelector(button).click();
(function poll() {
  const now = performance.now() - start;
  for (const s of selectors) if (!(s in seen) && document.querySelector(s)) seen[s] = now;
  if (Object.keys(seen).length === selectors.length || now > 120000) done(seen);
  else setTimeout(poll, 2);
})();
"""
HEATMAP = "#s2sa-heatmap-0 table.s2sa-table"
TREE = "#s2sa-beamtree-0 g.s2sa-leaf"
NEIGHBORS = "#s2sa-neighbors-0 details.s2sa-token"
WHATIF = ("#s2sa-whatif-result-0 .s2sa-whatif-text", "#s2sa-whatif-heatmap-0 table.s2sa-table")


def timed_click(driver, button: str, selectors: list[str]) -> dict[str, float]:
    """Seconds from clicking `button` until each of `selectors` is drawn (the old matches removed first)."""
    driver.set_script_timeout(150)
    seen = driver.execute_async_script(TIMED_CLICK, button, selectors)
    missing = [selector for selector in selectors if selector not in seen]
    if missing:
        raise RuntimeError(f"{missing} not drawn within 120 s")
    return {selector: seen[selector] / 1000 for selector in selectors}


def choose_search(driver, beams: int) -> None:
    click_label(driver, "#s2sa-mode", "greedy" if beams == 1 else "beam search")
    if beams > 1:
        box = css(driver, "#s2sa-width input[type=number]")[0]
        box.clear()
        box.send_keys(str(beams), "\n")


def translate_times(driver, beams: int, repeats: int, neighbors: bool) -> tuple[list[float], list[float]]:
    """Click-to-drawn seconds of `repeats` translations: until the view is drawn, and (with neighbours) until
    their lists are."""
    choose_search(driver, beams)
    view = [HEATMAP] + ([TREE] if beams > 1 else [])
    views, lists = [], []
    for repeat in range(repeats + 1):  # the first one warms up
        set_source(driver, SENTENCES[repeat % 2])
        seconds = timed_click(driver, "#s2sa-translate", view + ([NEIGHBORS] if neighbors else []))
        views.append(max(seconds[selector] for selector in view))
        if neighbors:
            lists.append(seconds[NEIGHBORS])
    return views[1:], lists[1:]


def redecode_times(driver, repeats: int) -> list[float]:
    """Re-decode click-to-drawn seconds, replacing output token 3 by its second most probable alternative."""
    times = []
    for repeat in range(repeats + 1):
        set_source(driver, SENTENCES[repeat % 2])
        timed_click(driver, "#s2sa-translate", [HEATMAP])
        open_dropdown(driver, "#s2sa-whatif-position-0")[2].click()
        wait_for(driver, lambda d: len(css(d, "#s2sa-whatif-token-0 input[type=radio]")) > 1, "no top-k")
        css(driver, "#s2sa-whatif-token-0 input[type=radio]")[1].click()
        times.append(max(timed_click(driver, "#s2sa-redecode-0", list(WHATIF)).values()))
    return times[1:]


def screenshot(driver, path: str, beams: int) -> None:
    """`SCREENSHOT_SENTENCE` translated by beam search: the page from the source box down to the end of the
    beam search tree (n-best list, heat-map with its coverage row, tree), captured beyond the window."""
    choose_search(driver, beams)
    set_source(driver, SCREENSHOT_SENTENCE)
    timed_click(driver, "#s2sa-translate", [HEATMAP, TREE])
    time.sleep(1)  # let the accordion's opening finish
    top, bottom, width = driver.execute_script(
        "const a = document.querySelector('#s2sa-source').getBoundingClientRect();"
        "const b = document.querySelector('#s2sa-beamtree-0').getBoundingClientRect();"
        "return [a.top + window.scrollY - 12, b.bottom + window.scrollY + 12, document.body.clientWidth];"
    )
    clip = {"x": 0, "y": top, "width": width, "height": bottom - top, "scale": 1}
    shot = driver.execute_cdp_cmd(
        "Page.captureScreenshot", {"format": "png", "clip": clip, "captureBeyondViewport": True}
    )
    Path(path).write_bytes(base64.b64decode(shot["data"]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="model folder (as it should be named on the page)")
    parser.add_argument("--neighbors", help="a training file: also time the neighbour lists")
    parser.add_argument("--neighbors_max", type=int, default=30_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--num_beams", type=int, default=5)
    parser.add_argument("--screenshot", help="write the page's screenshot (PNG) here")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads of the app (default 1: Chromium needs a core too)",
    )
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    options = {"allow_model_change": False}
    if args.neighbors:
        options |= {"neighbors": args.neighbors, "neighbors_max": args.neighbors_max}
    started = time.perf_counter()
    port = free_port()
    demo = start_app([args.model], port, **options)
    print(f"page built in {time.perf_counter() - started:.1f} s (neighbour index included)", flush=True)
    driver = make_driver(network_log=False)
    try:
        driver.get(f"http://127.0.0.1:{port}/")
        wait_for(driver, lambda d: css(d, "#s2sa-source textarea"), "the page did not render")
        words = [len(sentence.split()) for sentence in SENTENCES]
        for beams in (1, args.num_beams):
            views, lists = translate_times(driver, beams, args.repeats, bool(args.neighbors))
            search = "greedy" if beams == 1 else f"beam {beams} (with its tree)"
            print(
                f"Translate -> drawn view, {words} words, {search}: median {statistics.median(views):.2f} s "
                f"({', '.join(f'{t:.2f}' for t in views)})"
            )
            if lists:
                print(f"  ... -> neighbour lists drawn: median {statistics.median(lists):.2f} s")
        choose_search(driver, 1)
        redecodes = redecode_times(driver, args.repeats)
        print(
            f"Re-decode (what if, greedy) -> drawn: median {statistics.median(redecodes):.2f} s "
            f"({', '.join(f'{t:.2f}' for t in redecodes)})"
        )
        if args.screenshot:
            screenshot(driver, args.screenshot, args.num_beams)
            print(f"screenshot: {args.screenshot}")
    finally:
        driver.quit()
        demo.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
