"""The statement that sends a deferred unit's waiting writes (``stores/sql/later.py``), as
text: placeholders renumbered across its parts (``%s`` and raw ``$n``; a literal ``%%``
becomes ``%``), the expected counts checked by the main query or by a column added to the
carrying statement's ``RETURNING``, a carrier's own ``WITH`` queries joined."""

from __future__ import annotations

import pytest

pytest.importorskip("leadflow.stores.sql", reason="needs the sql extra")

from leadflow.stores.sql.later import MARK, Waiting, returns_last, statement

ACTIONS = Waiting("INSERT INTO a VALUES ($1, $2), ($3, $4) RETURNING id", [1, 2, 3, 4], raw=True)
ACTIONS.expect = 2
FACT = Waiting("INSERT INTO f VALUES (%s, '5%%')", ["f"])
ACTIVITY = Waiting("INSERT INTO t VALUES (%s) RETURNING id", lambda: ["t"], expect=1)


def test_the_writes_alone_end_in_the_check_of_their_counts() -> None:
    sql, values = statement([ACTIONS, FACT, ACTIVITY])
    assert sql == (
        "WITH leadflow_later_0 AS (INSERT INTO a VALUES ($1, $2), ($3, $4) RETURNING id), "
        "leadflow_later_1 AS (INSERT INTO f VALUES ($5, '5%')), "
        "leadflow_later_2 AS (INSERT INTO t VALUES ($6) RETURNING id) "
        "SELECT CAST(CASE WHEN (SELECT count(*) FROM leadflow_later_0) = 2 AND "
        "(SELECT count(*) FROM leadflow_later_2) = 1 "
        f"THEN '0' ELSE '{MARK}' END AS integer)"
    )
    assert values == [1, 2, 3, 4, "f", "t"]


def test_writes_without_counts_end_in_the_last_one() -> None:
    sql, values = statement([FACT, FACT])
    assert sql == (
        "WITH leadflow_later_0 AS (INSERT INTO f VALUES ($1, '5%')) INSERT INTO f VALUES ($2, '5%')"
    )
    assert values == ["f", "f"]
    assert statement([FACT]) == ("INSERT INTO f VALUES ($1, '5%')", ["f"])


def test_a_carrier_gets_the_check_as_a_last_column_and_its_parameters_go_last() -> None:
    sql, values = statement([ACTIVITY, FACT], "UPDATE s SET x = %s WHERE y = %s RETURNING s.id")
    assert sql == (
        "WITH leadflow_later_0 AS (INSERT INTO t VALUES ($1) RETURNING id), "
        "leadflow_later_1 AS (INSERT INTO f VALUES ($2, '5%')) "
        "UPDATE s SET x = $3 WHERE y = $4 RETURNING s.id, "
        "((SELECT count(*) FROM leadflow_later_0) = 1) AS leadflow_later_ok"
    )
    assert values == ["t", "f"]  # the carrier's own are the caller's to add


def test_a_carrier_with_its_own_with_queries_takes_the_writes_among_them() -> None:
    carrier = "WITH e AS (INSERT INTO e VALUES (%s) RETURNING id) INSERT INTO r SELECT id FROM e"
    sql, _ = statement([FACT], carrier)
    assert sql == (
        "WITH leadflow_later_0 AS (INSERT INTO f VALUES ($1, '5%')), "
        "e AS (INSERT INTO e VALUES ($2) RETURNING id) INSERT INTO r SELECT id FROM e"
    )


def test_only_a_final_returning_list_takes_a_column() -> None:
    assert returns_last("UPDATE s SET x = 1 RETURNING s.id")
    assert not returns_last("WITH e AS (INSERT INTO e VALUES (1) RETURNING id) SELECT 1")
    assert not returns_last("UPDATE s SET x = 1")
