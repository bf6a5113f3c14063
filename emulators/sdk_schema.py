"""Request bodies checked against databricks-sdk's own dataclasses and enums.

The SDK is generated from the API's specification: a dataclass field without a default is
required, an `Enum` field accepts only its members' values, a nested dataclass or a list of them
is an object or an array of objects. `problems(sql.AlertV2, body)` walks a JSON body along those
types and names every field the real API would reject, in its dotted path
(`evaluation.comparison_operator`, `tasks[0].sql_task.warehouse_id`). Fields the SDK does not
know are left alone: the API adds fields faster than any one SDK release.

The emulators turn the first problem into the API's own error shape
(`{"error_code": "INVALID_PARAMETER_VALUE", "message": ...}`, HTTP 400).
"""
from __future__ import annotations

import dataclasses
import enum
import functools
import types
import typing
from typing import Any

_NUMBERS = (int, float)


def problems(cls: type, data: Any, path: str = "") -> list[str]:
    """Every way `data` breaks the SDK dataclass `cls` (empty: the API would accept its shape)."""
    if not isinstance(data, dict):
        return [f"{path or 'body'}: expected an object"]
    found: list[str] = []
    hints = _hints(cls)
    for field in dataclasses.fields(cls):
        where = f"{path}.{field.name}" if path else field.name
        value = data.get(field.name)
        if value is None or value == "":
            if _required(field):
                found.append(f"Missing required field: {where}")
            continue
        found += _value_problems(hints[field.name], value, where)
    return found


def first_problem(cls: type, data: Any) -> str | None:
    found = problems(cls, data)
    return found[0] if found else None


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _required(field: dataclasses.Field) -> bool:  # type: ignore[type-arg]
    return field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING


def _value_problems(hint: Any, value: Any, where: str) -> list[str]:
    hint = _unwrap_optional(hint)
    origin = typing.get_origin(hint)
    if origin in (list, typing.List):
        if not isinstance(value, list):
            return [f"{where}: expected an array"]
        (item,) = typing.get_args(hint) or (Any,)
        return [p for i, v in enumerate(value) for p in _value_problems(item, v, f"{where}[{i}]")]
    if origin in (dict, typing.Dict):
        return [] if isinstance(value, dict) else [f"{where}: expected an object"]
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        allowed = [member.value for member in hint]
        if value not in allowed:
            return [f"Invalid value {value!r} for {where}: expected one of {', '.join(map(str, allowed))}"]
        return []
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return problems(hint, value, where)
    return _scalar_problems(hint, value, where)


def _scalar_problems(hint: Any, value: Any, where: str) -> list[str]:
    if hint is bool and not isinstance(value, bool):
        return [f"{where}: expected a boolean"]
    if hint is str and not isinstance(value, str):
        return [f"{where}: expected a string"]
    if hint in (int, float) and (isinstance(value, bool) or not isinstance(value, _NUMBERS)):
        if not (hint is int and isinstance(value, str) and value.lstrip("-").isdigit()):  # int64 as text
            return [f"{where}: expected a number"]
    return []


def _unwrap_optional(hint: Any) -> Any:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        return args[0] if len(args) == 1 else Any
    return hint
