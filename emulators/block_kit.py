"""Block Kit as strict as Slack: every limit slack_sdk's models flag, plus the ones they miss.

`message_problems(blocks)` and `view_problems(view)` parse each block with
`slack_sdk.models.blocks.Block.parse` and each view with `slack_sdk.models.views.View`, and call
`to_dict()`, which runs the models' own `validate_json()` on every nested object (section fields
<= 10, context elements <= 10, actions elements <= 25, button text <= 75, value <= 2000,
action_id <= 255, confirm title <= 100 and text <= 300, header <= 150, section text <= 3000,
views with 1..100 blocks, …). On top of that come the limits Slack enforces and the models do
not check: a text object with empty text, a section field over 2,000 characters, a confirm
dialog's confirm/deny button over 30 characters, two elements of one block with the same
`action_id`, two blocks with the same `block_id`, more than 50 blocks in a message, a block type
Slack does not know, and a modal with input blocks but no `submit` button.

Each problem is worded as Slack words them: `[ERROR] <reason> [json-pointer:/blocks/3/…]`. The
Slack emulator answers `invalid_blocks` for messages and `invalid_arguments` for views with them;
the test suite runs every rendered message and modal through the same functions.
"""
from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

from slack_sdk.models.blocks import Block
from slack_sdk.models.views import View

MAX_MESSAGE_BLOCKS = 50
MAX_FIELD_TEXT = 2000
TEXT_TYPES = ("plain_text", "mrkdwn")

# Block.parse logs (it does not raise) for a type it does not know; that is a problem here
logging.getLogger("slack_sdk.models").setLevel(logging.ERROR)


def _error(reason: str, pointer: str) -> str:
    return f"[ERROR] {reason} [json-pointer:{pointer}]"


def message_problems(blocks: Any) -> list[str]:
    """What Slack would reject in a message's (or an ephemeral's, or an update's) blocks."""
    if not isinstance(blocks, list):
        return [_error("must be an array", "/blocks")]
    found = [] if len(blocks) <= MAX_MESSAGE_BLOCKS else [
        _error(f"no more than {MAX_MESSAGE_BLOCKS} items allowed", "/blocks")]
    return found + blocks_problems(blocks, "/blocks")


def view_problems(view: Any) -> list[str]:
    """What Slack would reject in a view (views.open, views.push, views.update, views.publish)."""
    if not isinstance(view, dict) or view.get("type") not in ("modal", "home"):
        return [_error("must be a modal or home view", "/view/type")]
    blocks = view.get("blocks")
    found = _model_problems(lambda: View(**view).to_dict(), "/view")
    if isinstance(blocks, list):
        found += blocks_problems(blocks, "/view/blocks")
    if view["type"] == "modal":
        found += _modal_problems(view)
    return found


def blocks_problems(blocks: list[Any], where: str) -> list[str]:
    found: list[str] = []
    for index, block in enumerate(blocks):
        found += block_problems(block, f"{where}/{index}")
    found += _duplicates("block_id", [(b.get("block_id"), f"{where}/{i}/block_id")
                                      for i, b in enumerate(blocks) if isinstance(b, dict)])
    return found


def block_problems(block: Any, where: str) -> list[str]:
    if not isinstance(block, dict) or not isinstance(block.get("type"), str):
        return [_error("missing required field: type", where)]
    try:
        parsed = Block.parse(block)
    except Exception as exc:  # a malformed attribute the model cannot even build
        return [_error(f"invalid block: {exc}", where)]
    if parsed is None:
        return [_error(f"unsupported type: {block['type']}", f"{where}/type")]
    found = _model_problems(parsed.to_dict, where)
    found += _empty_texts(block, where)
    found += _field_problems(block, where)
    found += _duplicates("action_id", [(e.get("action_id"), f"{where}/elements/{i}/action_id")
                                       for i, e in enumerate(block.get("elements") or [])
                                       if isinstance(e, dict) and block["type"] == "actions"])
    return found


def _model_problems(build: Any, where: str) -> list[str]:
    try:
        build()
    except Exception as exc:  # SlackObjectFormationError, or a TypeError from a malformed attribute
        return [_error(str(exc) or type(exc).__name__, where)]
    return []


def _text_objects(node: Any, where: str) -> Iterator[tuple[dict[str, Any], str]]:
    if isinstance(node, dict):
        if node.get("type") in TEXT_TYPES and "text" in node:
            yield node, where
        for key, value in node.items():
            yield from _text_objects(value, f"{where}/{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _text_objects(value, f"{where}/{index}")


def _empty_texts(block: dict[str, Any], where: str) -> list[str]:
    return [_error("must be more than 0 characters", f"{pointer}/text")
            for obj, pointer in _text_objects(block, where)
            if not isinstance(obj.get("text"), str) or obj["text"] == ""]


def _field_problems(block: dict[str, Any], where: str) -> list[str]:
    if block.get("type") != "section":
        return []
    return [_error(f"must be less than {MAX_FIELD_TEXT + 1} characters", f"{where}/fields/{i}/text")
            for i, field in enumerate(block.get("fields") or [])
            if isinstance(field, dict) and len(str(field.get("text", ""))) > MAX_FIELD_TEXT]


def _duplicates(what: str, items: list[tuple[Any, str]]) -> list[str]:
    seen: set[str] = set()
    found = []
    for value, pointer in items:
        if not isinstance(value, str):
            continue
        if value in seen:
            found.append(_error(f"{what} must be unique: {value!r} is used twice", pointer))
        seen.add(value)
    return found


def _modal_problems(view: dict[str, Any]) -> list[str]:
    """What the View model leaves to Slack (it checks the title, submit, close, private_metadata and
    callback_id lengths itself): a modal needs a title, and a submit button once it has inputs."""
    found = []
    title = view.get("title")
    if not isinstance(title, dict) or not title.get("text"):
        found.append(_error("missing required field: title", "/view/title"))
    has_inputs = any(isinstance(b, dict) and b.get("type") == "input" for b in view.get("blocks") or [])
    if has_inputs and not view.get("submit"):
        found.append(_error("submit is required when a modal has input blocks", "/view/submit"))
    return found
