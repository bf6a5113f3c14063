"""Response actions: one module each in this package, found at start-up.

A module becomes an action by defining `ACTION`, an object with a `spec` (bot.core.actions.
ActionSpec), `preflight(ctx)` and `run(ctx)`. Nothing else needs wiring: the finding message
renders a button from the spec and the generic listener routes clicks by the spec's id.

A module that defines `INCIDENT_ACTION` instead acts on a storm incident's clusters (#14): it is
not a finding button, and handlers/incident.py wires it to the incident message.
"""
from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterator, Mapping
from types import MappingProxyType

from bot.core.actions import ActionSpec, ResponseAction


class RegistryError(ValueError):
    """An action module is malformed; the message names the module."""


def discover() -> Mapping[str, ResponseAction]:
    actions: dict[str, ResponseAction] = {}
    for module_name in _modules_with_action():
        action = _load(module_name)
        if action.spec.id in actions:
            raise RegistryError(f"{module_name}: action id {action.spec.id!r} is already used")
        actions[action.spec.id] = action
    return MappingProxyType(actions)


def _modules() -> Iterator[str]:
    for info in pkgutil.iter_modules(__path__):
        if not info.name.startswith("_"):
            yield f"{__name__}.{info.name}"


def _modules_with_action() -> Iterator[str]:
    for module_name in _modules():
        module = importlib.import_module(module_name)
        if getattr(module, "ACTION", None) is not None or getattr(module, "INCIDENT_ACTION", None) is None:
            yield module_name


def _load(module_name: str) -> ResponseAction:
    action = getattr(importlib.import_module(module_name), "ACTION", None)
    if action is None:
        raise RegistryError(f"{module_name}: defines no ACTION")
    spec = getattr(action, "spec", None)
    if not isinstance(spec, ActionSpec):
        raise RegistryError(f"{module_name}: ACTION.spec must be an ActionSpec")
    for method in ("preflight", "run"):
        if not callable(getattr(action, method, None)):
            raise RegistryError(f"{module_name}: ACTION has no {method}()")
    if not spec.id.startswith("esm.") or len(spec.id) > 255:
        raise RegistryError(f"{module_name}: action id must start with 'esm.' and fit 255 characters")
    if not spec.label or len(spec.label) > 75:
        raise RegistryError(f"{module_name}: label must be 1 to 75 characters")
    return action


def specs(actions: Mapping[str, ResponseAction]) -> tuple[ActionSpec, ...]:
    return tuple(sorted((a.spec for a in actions.values()), key=lambda s: s.order))
