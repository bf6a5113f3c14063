"""The README's screenshots of the demo page, made in headless Chromium from a fresh demo:

    bash scripts/screenshots.sh          (or: python -m tests.browser.screenshots docs/screenshots)

finding.png (a finding as Slack shows it), thread.png (acknowledged, its thread open),
benign-modal.png (the Mark benign modal), refusal.png (an outsider's Terminate refused),
home.png (the App Home tab).
"""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

from bot.cli.demo import OUTSIDER, RESPONDER
from tests.browser.conftest import WAIT, RunningDemo, click, new_driver


def main(out: Path) -> int:
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="esm-shots-") as work:
        running = RunningDemo(Path(work) / "demo")
        browser = new_driver((1280, 900))
        wait = WebDriverWait(browser, WAIT)
        try:
            browser.get(running.demo.page_url + f"?as={RESPONDER}")
            wait.until(EC.element_to_be_clickable((By.ID, "send-alert"))).click()
            running.run(running.demo.delivered())
            wait.until(lambda b: len(b.find_elements(By.CSS_SELECTOR, "#messages .thread-wrap")) >= 3)
            shoot(browser, out / "finding.png")

            ts = browser.find_elements(By.CSS_SELECTOR, "#messages .thread-wrap")[0].get_attribute("data-ts")
            click(browser, f'.thread-wrap[data-ts="{ts}"] button[data-action-id="esm.acknowledge"]')
            wait.until(EC.text_to_be_present_in_element((By.CSS_SELECTOR, f'.thread-wrap[data-ts="{ts}"]'), "Acknowledged"))
            click(browser, f'.thread-wrap[data-ts="{ts}"] .thread-toggle')
            thread = (By.CSS_SELECTOR, f'.thread-wrap[data-ts="{ts}"] .thread')
            wait.until(EC.text_to_be_present_in_element(thread, "acknowledged this finding"))
            scroll_to(browser, browser.find_element(*thread))
            shoot(browser, out / "thread.png")

            second = browser.find_elements(By.CSS_SELECTOR, "#messages .thread-wrap")[1].get_attribute("data-ts")
            click(browser, f'.thread-wrap[data-ts="{second}"] button[data-action-id="esm.mark_benign"]')
            modal = wait.until(EC.visibility_of_element_located((By.CSS_SELECTOR, ".modal[data-view-id]")))
            modal.find_element(By.CSS_SELECTOR, 'textarea[data-action-id="reason"]').send_keys(
                "Nightly kernel patching by the platform team")
            wait.until(lambda b: "matching" in b.find_element(By.CSS_SELECTOR, ".modal").text.lower()
                       or "event" in b.find_element(By.CSS_SELECTOR, ".modal").text.lower())
            shoot(browser, out / "benign-modal.png")
            click(browser, ".modal-close")
            wait.until(EC.invisibility_of_element_located((By.CSS_SELECTOR, ".modal[data-view-id]")))

            browser.get(running.demo.page_url + f"?as={OUTSIDER}")
            wait.until(lambda b: len(b.find_elements(By.CSS_SELECTOR, "#messages .thread-wrap")) >= 3)
            third = browser.find_elements(By.CSS_SELECTOR, "#messages .thread-wrap")[2].get_attribute("data-ts")
            click(browser, f'.thread-wrap[data-ts="{third}"] button[data-action-id="esm.terminate_cluster"]')
            click(browser, ".modal.confirm .confirm-yes")
            wait.until(EC.text_to_be_present_in_element((By.CSS_SELECTOR, "#messages .message.ephemeral"), "Refused"))
            scroll_to(browser, browser.find_element(By.CSS_SELECTOR, "#messages .message.ephemeral"))
            shoot(browser, out / "refusal.png")

            browser.get(running.demo.page_url + f"?as={RESPONDER}&tab=home")
            wait.until(EC.visibility_of_element_located((By.CSS_SELECTOR, "#home .block.image img")))
            wait.until(lambda b: b.execute_script(
                "const i = document.querySelector('#home .block.image img'); return i.complete && i.naturalWidth > 0"))
            shoot(browser, out / "home.png")
        finally:
            browser.quit()
            running.close()
    for name in ("finding", "thread", "benign-modal", "refusal", "home"):
        print(out / f"{name}.png")
    return 0


def scroll_to(browser, element) -> None:
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", element)


def shoot(browser, path: Path) -> None:
    browser.save_screenshot(str(path))


if __name__ == "__main__":
    raise SystemExit(main(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/screenshots")))
