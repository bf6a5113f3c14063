"""The demo page as a user meets it: findings rendered as Slack renders them, and every click, modal
and command going to the real bot through the Slack stand-in, signed as Slack signs them."""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.select import Select
from selenium.webdriver.support.ui import WebDriverWait

from bot.cli.demo import CHANNEL, OUTSIDER
from tests.browser.conftest import WAIT, RunningDemo, click

pytestmark = pytest.mark.browser


def wait(browser: Any) -> WebDriverWait:
    return WebDriverWait(browser, WAIT)


def open_page(browser: Any, running: RunningDemo, **query: str) -> None:
    suffix = "?" + "&".join(f"{k}={v}" for k, v in query.items()) if query else ""
    browser.get(running.demo.page_url + suffix)
    wait(browser).until(EC.text_to_be_present_in_element((By.ID, "live"), "live"))


def findings_posted(browser: Any, running: RunningDemo) -> list[Any]:
    """Send the alert from the page's own button; wait for the findings to show."""
    wait(browser).until(EC.element_to_be_clickable((By.ID, "send-alert"))).click()
    wait(browser).until(EC.text_to_be_present_in_element((By.ID, "toast"), "HTTP 202"))
    running.run(running.demo.delivered())
    expected = len(running.demo.slack.messages(CHANNEL))
    assert expected > 0
    return wait(browser).until(lambda b: (found := b.find_elements(By.CSS_SELECTOR, "#messages .thread-wrap"))
                               and len(found) == expected and found)


def button(message: Any, action_id: str) -> Any:
    return message.find_element(By.CSS_SELECTOR, f'button[data-action-id="{action_id}"]')


def test_a_finding_renders_as_slack_shows_it_with_its_buttons(browser, running_demo):
    open_page(browser, running_demo)
    first = findings_posted(browser, running_demo)[0]
    stored = running_demo.demo.slack.messages(CHANNEL)[0]
    header = first.find_element(By.CSS_SELECTOR, ".block.header").text
    shortcode, title = next(b["text"]["text"] for b in stored["blocks"] if b["type"] == "header").split(" ", 1)
    assert shortcode.startswith(":") and header == f"{header.split(' ', 1)[0]} {title}"
    assert not header.startswith(":"), "the severity shortcode shows as its emoji"
    labels = [b.text for b in first.find_elements(By.CSS_SELECTOR, ".block.actions button")]
    assert {"Acknowledge", "Mark benign", "Terminate cluster"} <= set(labels)
    assert "btn-danger" in button(first, "esm.terminate_cluster").get_attribute("class")
    # the finding with its thread open (compact findings keep their details in the thread):
    # mrkdwn is rendered, not shown as markup: bold as <b>, fields in two columns, code as <code>
    ts = first.get_attribute("data-ts")
    if running_demo.demo.slack.thread(CHANNEL, ts):
        click(browser, f'.thread-wrap[data-ts="{ts}"] .thread-toggle')
        wait(browser).until(EC.presence_of_element_located((By.CSS_SELECTOR, f'.thread-wrap[data-ts="{ts}"] .thread')))
    first = browser.find_element(By.CSS_SELECTOR, f'.thread-wrap[data-ts="{ts}"]')
    assert first.find_elements(By.CSS_SELECTOR, ".fields .field")
    assert first.find_elements(By.CSS_SELECTOR, ".section-text b, .field b")
    assert first.find_elements(By.CSS_SELECTOR, "code")
    text = first.text
    for markup in ("*", ":red_circle:", ":large_orange_circle:", "&lt;", "&amp;", "<http"):
        assert markup not in text, f"raw Slack markup {markup!r} shown on the page"
    links = first.find_elements(By.CSS_SELECTOR, "a[href^='https://dbc-demo.cloud.databricks.com']")
    assert links and all(link.text and not link.text.startswith("<") for link in links)


def test_acknowledge_as_a_responder_updates_the_message(browser, running_demo):
    open_page(browser, running_demo)
    first = findings_posted(browser, running_demo)[0]
    ts = first.get_attribute("data-ts")
    click(browser, f'.thread-wrap[data-ts="{ts}"] button[data-action-id="esm.acknowledge"]')
    css = f'.thread-wrap[data-ts="{ts}"] > .message'
    wait(browser).until(EC.text_to_be_present_in_element((By.CSS_SELECTOR, css), "Acknowledged"))
    message = browser.find_element(By.CSS_SELECTOR, css)
    assert "(edited)" in message.text
    assert not message.find_elements(By.CSS_SELECTOR, 'button[data-action-id="esm.acknowledge"]')
    # the thread records who did it: expand it
    click(browser, f'.thread-wrap[data-ts="{ts}"] .thread-toggle')
    wait(browser).until(EC.text_to_be_present_in_element(
        (By.CSS_SELECTOR, f'.thread-wrap[data-ts="{ts}"] .thread'), "@responder acknowledged this finding"))


def test_terminate_as_an_outsider_is_refused_after_its_confirm_dialog(browser, running_demo):
    open_page(browser, running_demo, **{"as": OUTSIDER})
    first = findings_posted(browser, running_demo)[0]
    click(browser, f'.thread-wrap[data-ts="{first.get_attribute("data-ts")}"] button[data-action-id="esm.terminate_cluster"]')
    dialog = wait(browser).until(EC.visibility_of_element_located((By.CSS_SELECTOR, ".modal.confirm")))
    assert "Terminate" in dialog.text
    click(browser, ".modal.confirm .confirm-yes")
    wait(browser).until(EC.text_to_be_present_in_element((By.CSS_SELECTOR, "#messages .message.ephemeral"), "Refused"))
    refusal = browser.find_element(By.CSS_SELECTOR, "#messages .message.ephemeral")
    assert "Only visible to you" in refusal.text
    assert "ESM_RESPONDERS" in refusal.text
    assert running_demo.demo.dbx.calls_to("clusters/delete") == [], "nothing was terminated"
    # the message itself is unchanged: still offering Terminate
    assert button(browser.find_elements(By.CSS_SELECTOR, "#messages .thread-wrap")[0], "esm.terminate_cluster")


def test_esm_recent_typed_in_the_message_box_answers_privately(browser, running_demo):
    open_page(browser, running_demo)
    findings_posted(browser, running_demo)
    box = browser.find_element(By.ID, "message-box")
    box.send_keys("/esm recent 7d")
    click(browser, "#send")
    wait(browser).until(EC.text_to_be_present_in_element((By.CSS_SELECTOR, "#messages .message.ephemeral"), "Kernel"))
    answer = browser.find_element(By.CSS_SELECTOR, "#messages .message.ephemeral")
    assert "Only visible to you" in answer.text
    assert "Kernel" in answer.text and "esm-bot" in answer.text  # the sample events' detections, from the bot


def test_the_benign_modal_opens_in_the_page_and_its_submission_closes_the_finding(browser, running_demo):
    open_page(browser, running_demo)
    first = findings_posted(browser, running_demo)[0]
    ts = first.get_attribute("data-ts")
    click(browser, f'.thread-wrap[data-ts="{ts}"] button[data-action-id="esm.mark_benign"]')
    modal = wait(browser).until(EC.visibility_of_element_located((By.CSS_SELECTOR, ".modal[data-view-id]")))
    assert "benign" in modal.text.lower()
    # submitting without a reason: the bot's field error shows under the field, the modal stays
    click(browser, ".modal-submit")
    wait(browser).until(EC.visibility_of_element_located((By.CSS_SELECTOR, ".modal .input-error")))
    reason = browser.find_element(By.CSS_SELECTOR, '.modal textarea[data-action-id="reason"]')
    reason.send_keys("nightly kernel patching by the platform team")
    click(browser, ".modal-submit")
    wait(browser).until(EC.invisibility_of_element_located((By.CSS_SELECTOR, ".modal[data-view-id]")))
    css = f'.thread-wrap[data-ts="{ts}"] > .message'
    wait(browser).until(EC.text_to_be_present_in_element((By.CSS_SELECTOR, css), "Marked benign"))
    [suppression] = running_demo.run(running_demo.demo.runtime.store.active_suppressions(datetime.now(timezone.utc)))
    assert suppression.reason == "nightly kernel patching by the platform team"


def test_message_text_is_never_html_and_mrkdwn_renders_as_slack_does(browser, running_demo):
    hostile = '<img src=x onerror="document.title=\'pwned\'">'
    blocks = [
        {"type": "header", "text": {"type": "plain_text", "text": hostile}},
        {"type": "section", "text": {"type": "mrkdwn", "text":
            "*bold* _italic_ `code` &lt;b&gt;not bold&lt;/b&gt; &amp; :red_circle: :00: <https://example.com/x|a link> "
            "<javascript:alert(1)|bad link> <@U0RESPONDER>"}},
    ]
    running_demo.run(running_demo.demo.runtime.chat.post(CHANNEL, "hostile", blocks))
    open_page(browser, running_demo)
    section = wait(browser).until(EC.visibility_of_element_located((By.CSS_SELECTOR, "#messages .block.section")))
    header = browser.find_element(By.CSS_SELECTOR, "#messages .block.header")
    assert header.text == hostile and not browser.find_elements(By.CSS_SELECTOR, "#messages img")
    assert browser.title != "pwned"
    assert section.find_element(By.CSS_SELECTOR, "b").text == "bold"
    assert section.find_element(By.CSS_SELECTOR, "i").text == "italic"
    assert section.find_element(By.CSS_SELECTOR, "code").text == "code"
    text = section.text
    assert "<b>not bold</b> & 🔴 :00:" in text  # entities shown as characters; unknown shortcodes left alone
    [link] = section.find_elements(By.CSS_SELECTOR, "a")
    assert link.text == "a link" and link.get_attribute("href") == "https://example.com/x"
    assert "bad link" in text, "a non-http link is shown as text, never as a javascript: href"
    assert "@responder" in section.find_element(By.CSS_SELECTOR, ".mention").text
