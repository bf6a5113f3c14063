"""The demo page in a real browser: Debian's headless Chromium, driven by Selenium.

The demo stack (the bot, the Slack and Databricks stand-ins: bot.cli.demo.demo_stack) runs on its
own event loop in a thread, as `esm-bot demo` runs it; the browser talks to it over HTTP like a
user's would. Without a Chromium and its driver the tests skip with one line saying so, except
under CI=true, where they must run (scripts/test.sh installs both).
"""
from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import threading
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any

import pytest

from bot.cli.demo import Demo, demo_stack

# the network is closed: without these Chromium waits on connections it will never make
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage", "--window-size=1400,1000")
WAIT = 30.0  # the longest any condition is waited for


def chromium_paths() -> tuple[str, str] | None:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver") or ("/usr/bin/chromedriver" if Path("/usr/bin/chromedriver").exists() else None)
    return (browser, driver) if browser and driver else None


def new_driver(window: tuple[int, int] = (1400, 1000)) -> Any:
    """A fresh headless Chromium with its own profile folder (removed when the driver quits)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    paths = chromium_paths()
    if paths is None:
        raise RuntimeError("no Chromium here: apt-get install -y chromium chromium-driver")
    browser, driver = paths
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--window-size={window[0]},{window[1]}")
    profile = tempfile.mkdtemp(prefix="esm-chromium-")
    options.add_argument(f"--user-data-dir={profile}")
    chrome = webdriver.Chrome(service=Service(executable_path=driver), options=options)
    chrome.set_page_load_timeout(WAIT)
    original_quit = chrome.quit

    def quit_and_clean() -> None:
        try:
            original_quit()
        finally:
            shutil.rmtree(profile, ignore_errors=True)

    chrome.quit = quit_and_clean
    return chrome


def click(browser: Any, css: str, timeout: float = WAIT) -> None:
    """Click what `css` finds, found afresh: the page redraws on every live update, so an element
    found a moment ago may be gone (stale); the click is retried until it lands."""
    from selenium.common.exceptions import (
        ElementClickInterceptedException, NoSuchElementException, StaleElementReferenceException,
    )
    from selenium.webdriver.support.ui import WebDriverWait

    def attempt(b: Any) -> bool:
        try:
            b.find_element("css selector", css).click()
            return True
        except (StaleElementReferenceException, NoSuchElementException, ElementClickInterceptedException):
            return False

    WebDriverWait(browser, timeout).until(attempt)


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    if chromium_paths() is None:
        if os.environ.get("CI") == "true":
            pytest.fail("CI=true needs the browser tests: install chromium and chromium-driver (scripts/test.sh does)")
        pytest.skip("no Chromium and chromedriver here (apt-get install -y chromium chromium-driver): browser tests skipped")
    chrome = new_driver()
    try:
        yield chrome
    finally:
        chrome.quit()


class LoopThread:
    """An event loop in a thread, for the demo stack while the test drives the browser."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, Any], timeout: float = 90.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


class RunningDemo:
    def __init__(self, workdir: Path):
        self.thread = LoopThread()
        self._stack = demo_stack(workdir)
        self.demo: Demo = self.thread.run(self._stack.__aenter__())

    def run(self, coro: Coroutine[Any, Any, Any]) -> Any:
        return self.thread.run(coro)

    def close(self) -> None:
        try:
            self.thread.run(self._stack.__aexit__(None, None, None))
        finally:
            self.thread.stop()


@pytest.fixture
def running_demo(tmp_path: Path) -> Iterator[RunningDemo]:
    running = RunningDemo(tmp_path / "demo")
    try:
        yield running
    finally:
        running.close()
