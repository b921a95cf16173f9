"""Driving the explorer in a real browser: headless Chromium from the system packages, through Selenium.

Shared by the browser tests and `tests/explorer_figures.py`. Needs `pip install selenium` and
`apt-get install chromium chromium-driver` (/usr/bin/chromium, /usr/bin/chromedriver); nothing is downloaded
at run time (the driver path is given explicitly, so Selenium Manager never runs).
"""

from __future__ import annotations

import os
import socket
import tempfile

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
WAIT = 90  # seconds; generous because CI machines may be shared


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class BrowserMissing(RuntimeError):
    """Selenium or the system's Chromium is not installed."""


def make_driver(width: int = 1400, height: int = 1000, network_log: bool = True):
    """Headless Chromium with a fresh profile, and the network log on (to prove the page loads offline)
    unless `network_log` is False: it keeps every message of the page's event stream, so timings made with
    it on slow down as it grows.

    Raises:
        [`BrowserMissing`]: naming what to install.
    """
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError as err:
        raise BrowserMissing("needs pip install selenium") from err
    if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
        raise BrowserMissing("needs apt-get install chromium chromium-driver")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (*CHROMIUM_FLAGS, f"--window-size={width},{height}"):
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tempfile.mkdtemp(prefix='chromium-')}")
    if network_log:
        options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)


def start_app(models: list[str], port: int, **options):
    """Build the page (`options` go to `build_app`) and serve it from a thread of this process on 127.0.0.1:port."""
    from hf_seq2seq_attn.explorer import build_app, launch_app

    demo = build_app(models, **options)
    launch_app(demo, server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    return demo


# ----- small Selenium helpers ---------------------------------------------------------------
def wait_for(driver, condition, message: str, timeout: float = WAIT):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.2).until(lambda d: condition(d), message)


def css(driver, selector: str):
    from selenium.webdriver.common.by import By

    return driver.find_elements(By.CSS_SELECTOR, selector)


def text_of(driver, selector: str) -> str:
    elements = css(driver, selector)
    return elements[0].text if elements else ""


def click_label(driver, container: str, text: str) -> None:
    """Click the radio option (or button) inside `container` whose label is `text`."""
    from selenium.webdriver.common.by import By

    root = css(driver, container)[0]
    for element in root.find_elements(By.XPATH, ".//label | .//button"):
        if element.text.strip().splitlines()[:1] == [text]:  # an accordion's label ends in an arrow line
            element.click()
            return
    raise AssertionError(f"no option {text!r} in {container}: {root.text!r}")


def set_source(driver, text: str) -> None:
    """Type (short) or paste (long: set the value and fire `input`, as a paste does) into the text box."""
    from selenium.webdriver.common.keys import Keys

    box = css(driver, "#s2sa-source textarea")[0]
    box.send_keys(Keys.CONTROL, "a")
    box.send_keys(Keys.BACKSPACE)  # key events, so the page's own value is updated (clear() fires none)
    if len(text) < 200:
        box.send_keys(text)
    else:
        driver.execute_script(
            "arguments[0].value = arguments[1];"
            "arguments[0].dispatchEvent(new Event('input', {bubbles: true}));",
            box,
            text,
        )


def heatmap(driver, column: int) -> dict:
    """Row labels, column labels, caption and cell count of a column's heat-map."""
    return heatmap_at(driver, f"#s2sa-heatmap-{column}")


def heatmap_at(driver, selector: str) -> dict:
    """Row labels, column labels, caption and cell count of the heat-map inside `selector`."""
    return driver.execute_script(
        """
        const root = document.querySelector(arguments[0]);
        const table = root && root.querySelector('table.s2sa-table');
        if (!table) return null;
        return {
          rows: [...table.querySelectorAll('th.s2sa-tgt')].map(e => e.textContent),
          cols: [...table.querySelectorAll('th.s2sa-src')].map(e => e.textContent),
          cells: table.querySelectorAll('tbody td').length,
          caption: table.caption ? table.caption.textContent : '',
        };""",
        selector,
    )


def open_dropdown(driver, container: str):
    """Open the gradio dropdown in `container` (again, until its choices have arrived); its option elements."""

    def options(d):
        boxes = css(d, f"{container} input")  # none while gradio redraws the dropdown
        if boxes and boxes[0].get_attribute("aria-expanded") != "true":
            boxes[0].click()
        return css(d, f"{container} [role=option]")

    return wait_for(driver, options, f"no options in {container}")


def pick_dropdown(driver, container: str, label: str) -> None:
    """Click the option `label` of the gradio dropdown in `container`."""
    found = open_dropdown(driver, container)
    for option in found:
        if option.get_attribute("aria-label") == label:
            option.click()
            return
    raise AssertionError(f"no option {label!r} in {container}: {[o.text for o in found]}")
