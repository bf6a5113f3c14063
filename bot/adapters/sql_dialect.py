"""Run Databricks-dialect SQL on DuckDB: translate once per statement with sqlglot.

DuckDB reserves the catalog name `system`, so `system.access.audit` becomes `access.audit`
in the embedded file; named markers `:name` become `$name`.
"""
from __future__ import annotations

from functools import lru_cache

import sqlglot
from sqlglot import exp


def _drop_system_catalog(node: exp.Expression) -> exp.Expression:
    if isinstance(node, exp.Table) and node.catalog == "system":
        node.set("catalog", None)
    return node


@lru_cache(maxsize=64)
def to_duckdb(databricks_sql: str) -> str:
    tree = sqlglot.parse_one(databricks_sql, read="databricks")
    return tree.transform(_drop_system_catalog).sql(dialect="duckdb")
