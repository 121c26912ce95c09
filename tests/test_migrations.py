"""The advice for Alembic-managed apps: an Index(...) and a migration, as valid Python, for each
dialect (the real Alembic runs them in tests/cli/test_alembic.py)."""

from __future__ import annotations

import ast

from usersctl.migrations import email_index_advice


def calls(source: str) -> dict[str, ast.Call]:
    """The ``op.*`` calls of a migration, by name."""
    found = {}
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            found[node.func.attr] = node
    return found


def keywords(call: ast.Call) -> dict[str, object]:
    return {kw.arg: ast.literal_eval(kw.value) for kw in call.keywords if kw.arg}


def test_postgresql_builds_concurrently_outside_the_migrations_transaction() -> None:
    advice = email_index_advice("users", "postgresql", schema="auth")
    assert advice.index_name == "ix_users_email_lower"
    assert advice.model_line == 'Index("ix_users_email_lower", text("lower(email)"), unique=True)'
    found = calls(advice.migration)
    assert set(found) >= {"create_index", "drop_index", "autocommit_block"}
    create = found["create_index"]
    assert [ast.literal_eval(arg) for arg in create.args[:2]] == ["ix_users_email_lower", "users"]
    assert keywords(create) == {"unique": True, "schema": "auth", "postgresql_concurrently": True}
    drop = keywords(found["drop_index"])
    assert drop == {"table_name": "users", "schema": "auth", "postgresql_concurrently": True}
    # Both operations are inside the autocommit block
    for function in ast.parse(advice.migration).body:
        assert isinstance(function, ast.FunctionDef)
        (block,) = function.body
        assert isinstance(block, ast.With)


def test_sqlite_builds_it_in_the_migrations_transaction() -> None:
    advice = email_index_advice("user", "sqlite")
    found = calls(advice.migration)
    assert "autocommit_block" not in found
    assert keywords(found["create_index"]) == {"unique": True}
    assert keywords(found["drop_index"]) == {"table_name": "user"}
    assert 'sa.text("lower(email)")' in advice.migration
