"""DBSQL alert webhook bodies for the tests, quoted from the references.

DOCUMENTED_CURRENT is the payload example of Databricks' "SQL alert webhook payload" page
(docs.databricks.com/…/sql/user/alerts/webhook-payload, "This payload format applies to the latest
version of Databricks SQL alerts"), quoted as published up to the evaluation's `notification`
(the published example goes on with its `subscriptions`, not quoted here). The page says:
"Fields without values are omitted. Configure your webhook receiver to ignore unknown fields and
handle missing optional fields."

LEGACY is the shape legacy alerts send (`alert.{id, name, state, title, description, query_id}`,
per the project's domain facts, shared/DESIGN.md §4); no published example of it was found.
"""
from __future__ import annotations

import copy
from typing import Any

DOCUMENTED_CURRENT: dict[str, Any] = {
    "event": "alert_state_change",
    "url_base": "https://<workspace-url>/sql?o=1234567890123456",
    "alert": {
        "title": "Alert \"Daily revenue\" changed status to TRIGGERED",
        "description": "Daily revenue exceeded the configured threshold.",
        "alert": {
            "id": "9876543210987654",
            "name": "Daily revenue",
            "owner": {
                "id": 2468013579246801,
                "name": "Alex Smith",
                "email": "alex.smith@example.com",
            },
            "created_at": 1767225600000,
            "parent": "folders/1357924680135792",
            "query_text": "SELECT SUM(revenue) AS total_revenue FROM main.sales.daily",
            "warehouse_id": "4b9b953939869799",
            "custom_summary": "Alert \"{{ALERT_NAME}}\" changed status to {{ALERT_STATUS}}",
            "custom_description": "Daily revenue exceeded the configured threshold.",
            "evaluations": [
                {
                    "id": "9a1f0fc0-7d18-4f42-8ec0-9c1f8e72d3a4",
                    "source": {
                        "name": "total_revenue",
                        "display": "total_revenue",
                        "aggregation": "AGGREGATION_UNSPECIFIED",
                    },
                    "comparison_operator": "GREATER_THAN",
                    "threshold": {
                        "value": {
                            "double_value": 100000.0,
                        },
                    },
                    "empty_result_state": "OK",
                    "notification": {
                        "seconds_to_retrigger": 3600,
                        "notify_on_ok": True,
                    },
                },
            ],
        },
    },
}

LEGACY: dict[str, Any] = {
    "event": "alert_state_change",
    "url_base": "https://example.cloud.databricks.com",
    "alert": {
        "id": "1234",
        "name": "Capsule8 detections (legacy)",
        "state": "TRIGGERED",
        "title": "ESM",
        "description": "rows",
        "query_id": "5678",
    },
}


def current(**inner: Any) -> dict[str, Any]:
    """The documented current payload, with `alert.alert` fields replaced (None drops one)."""
    payload = copy.deepcopy(DOCUMENTED_CURRENT)
    for key, value in inner.items():
        if value is None:
            payload["alert"]["alert"].pop(key, None)
        else:
            payload["alert"]["alert"][key] = value
    return payload


def minimal_current(alert_id: str = "9876543210987654") -> dict[str, Any]:
    """What an alert with nothing optional configured sends: fields without values are omitted."""
    return {"event": "alert_state_change", "alert": {"alert": {"id": alert_id}}}
