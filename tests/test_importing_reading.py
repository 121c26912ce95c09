"""Reading import files (usersctl.importing.reading) and the problems an import reports
(usersctl.importing.rows), at the library's level: the records and line numbers each format
gives, and the exact words of each refusal. No database: quick enough for the mutation run of
these two modules (benchmarks/mutation.py)."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest

from usersctl.errors import Conflict, InvalidInput
from usersctl.fields import NESTING_TOO_DEEP
from usersctl.importing.reading import (
    TextRecord,
    UnreadableRecord,
    format_for,
    read_records,
)
from usersctl.importing.rows import (
    MAX_LINE_BYTES,
    ImportConflict,
    ImportRejected,
    ImportSummary,
    Problem,
    Problems,
)

#: Deeper than Python's JSON reader goes (its recursion limit), not deeper than a line holds.
DEEP = "[" * 100_000 + "]" * 100_000
LONG = "9" * 5000  # more digits than int() reads


def records(data: str | bytes, fmt: str | None = None, **options: Any) -> list[Any]:
    raw = data.encode() if isinstance(data, str) else data
    return list(read_records(io.BytesIO(raw), fmt, **options))


def refusal(data: str | bytes, fmt: str | None = None, **options: Any) -> str:
    with pytest.raises(ImportRejected) as refused:
        records(data, fmt, **options)
    return str(refused.value)


def one(reason: str, line: int = 1) -> str:
    return f"1 row is invalid, nothing was written: line {line}: {reason}"


# Which format ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "yaml", "expected"),
    [
        ("users.jsonl", False, "jsonl"),
        ("USERS.NDJSON", False, "jsonl"),
        ("users.Csv", False, "csv"),
        ("users.json", False, "json"),
        ("users.yaml", False, None),
        ("users.yaml", True, "yaml"),
        ("users.YML", True, "yaml"),
        ("users.txt", True, None),
        ("-", True, None),
        ("", True, None),
        (None, True, None),
    ],
)
def test_the_format_is_read_from_the_file_name(name: str | None, yaml: bool, expected: str) -> None:
    assert format_for(name, None, yaml=yaml) == expected
    assert format_for(name, "csv", yaml=yaml) == "csv"


def test_yaml_is_a_format_only_where_asked_for_and_adds_to_the_others() -> None:
    assert format_for("users.yaml", None) is None
    assert format_for("users.csv", None, yaml=True) == "csv"
    assert format_for("users.jsonl", None, yaml=True) == "jsonl"


def test_the_first_character_decides_the_format_when_none_is_given() -> None:
    assert records("") == []
    assert records('  [{"email": "a@x.io"}]') == [(1, {"email": "a@x.io"})]
    assert records(' {"email": "a@x.io"}\n{"n": 2}\n') == [(1, {"email": "a@x.io"}), (2, {"n": 2})]
    assert records("email\na@x.io\n") == [(2, {"email": "a@x.io"})]
    with pytest.raises(InvalidInput) as refused:
        records("x", "xml")
    assert str(refused.value) == "unknown format 'xml'; use one of jsonl, csv, json, yaml"


# Lines -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["jsonl", None])
def test_a_line_of_the_longest_length_is_read_and_a_longer_one_refused(fmt: str | None) -> None:
    head = '{"email": "a@x.io"}\n'
    filler = "b" * (MAX_LINE_BYTES - len('{"email": ""}\n'))
    longest = f'{{"email": "{filler}"}}\n'
    assert len(longest.encode()) == MAX_LINE_BYTES
    assert len(records(head + longest, fmt)) == 2
    longer = longest.replace("b", "bb", 1)
    assert refusal(head + longer, fmt) == one(f"line is longer than {MAX_LINE_BYTES} bytes", 2)


def test_a_byte_order_mark_is_refused_at_the_start_only() -> None:
    message = "the file starts with a byte-order mark; save it as UTF-8 without BOM"
    assert refusal(b'\xef\xbb\xbf{"a": 1}\n') == one(message)
    assert records(b"name\n\xef\xbb\xbfvalue\n", "csv") == [(2, {"name": "\ufeffvalue"})]


def test_invalid_utf8_is_refused_with_its_line() -> None:
    assert refusal(b'{"a": 1}\n{"b": "\xff"}\n') == one("not valid UTF-8", 2)


# JSON lines --------------------------------------------------------------------------------------


def test_json_lines_skip_blank_lines_and_keep_the_numbers() -> None:
    text = '{"a": 1}\n\n   \n{"b": [1, 2]}\n'
    assert records(text, "jsonl") == [(1, {"a": 1}), (4, {"b": [1, 2]})]


def test_json_lines_refuse_what_is_not_an_object() -> None:
    assert refusal('{"a": 1}\n{"b": 1}\n{"a": x}\n', "jsonl") == one(
        "not valid JSON (Expecting value)", 3
    )
    assert refusal('{"a": 1}\n{"a": \n', "jsonl") == one("not valid JSON (Expecting value)", 2)
    assert refusal('{"a": 1}\n[1]\n', "jsonl") == one("expected a JSON object", 2)
    # A number int() cannot read, then no JSON: refused once read with the number marked.
    assert refusal(f'{{"a": 1}}\n [{LONG}, x]\n', "jsonl") == one(
        "not valid JSON (Expecting value)", 2
    )


def test_a_json_line_nested_too_deep_or_with_a_huge_number_is_an_unreadable_record() -> None:
    text = f'{{"a": {DEEP}}}\n  {{"n": {{"m": [{LONG}]}}}}\n{{"ok": 1}}\n'
    (first, second, third) = records(text, "jsonl")
    assert first[0] == 1 and isinstance(first[1], UnreadableRecord) and first[1] == {}
    assert first[1].reason == NESTING_TOO_DEEP
    assert second[0] == 2 and isinstance(second[1], UnreadableRecord)
    assert second[1].reason == "field 'n': number has too many digits (5000)"
    assert third == (3, {"ok": 1})
    (only,) = records(f'{{"n": -{LONG}, "m": 1}}\n', "jsonl")
    assert only[1].reason == "field 'n': number has too many digits (5000)"
    (bare,) = records(f"-{LONG}\n", "jsonl")
    assert bare[1].reason == "number has too many digits (5000)"
    # A long number that int() reads after all (a float's digits) is no problem.
    assert records(f'{{"f": {LONG}.5}}\n', "jsonl") == [(1, {"f": float(LONG + ".5")})]


# JSON arrays -------------------------------------------------------------------------------------


def test_a_json_array_numbers_its_items() -> None:
    text = '[\n {"a": 1},\n {"b": 2}\n]\n'
    assert records(text, "json") == [(1, {"a": 1}), (2, {"b": 2})]
    assert records("[]", "json") == []


def test_a_json_document_must_be_an_array_of_objects() -> None:
    assert refusal('{"a": 1}', "json") == one("expected a JSON array of objects")
    assert refusal('[{"a": 1}, 2]', "json") == one("expected a JSON object", 2)
    assert refusal('[\n{"a": 1},\n{"a": }]', "json") == one("not valid JSON (Expecting value)", 3)


def test_an_array_with_unreadable_items_is_read_item_by_item() -> None:
    text = f'  [ {{"a": {DEEP}}} ,\n{{"s": "]}}[\\"{{"}}, {{"n": {LONG}}} ,{{"ok": 1}} ]  \n'
    found = records(text, "json")
    assert [index for index, _ in found] == [1, 2, 3, 4]
    assert isinstance(found[0][1], UnreadableRecord)
    assert found[0][1].reason == NESTING_TOO_DEEP
    assert found[1][1] == {"s": ']}["{'}
    assert not isinstance(found[1][1], UnreadableRecord)
    assert found[2][1].reason == "field 'n': number has too many digits (5000)"
    assert found[3][1] == {"ok": 1}


def test_an_unreadable_array_with_a_fault_is_refused_where_it_is() -> None:
    assert refusal(f'{{"a": {LONG}}}', "json") == one("expected a JSON array of objects")
    assert refusal(f'[{{"a": {LONG}}} {{"b": 1}}]', "json") == one(
        "not valid JSON (Expecting ',' delimiter)"
    )
    assert refusal(f'[{{"a": {LONG}}}] [', "json") == one("not valid JSON (Extra data)")
    assert refusal(f'[{{"a": {LONG}}}]x', "json") == one("not valid JSON (Extra data)")
    assert refusal(f'[{{"a": {LONG}}}]x\n', "json") == one("not valid JSON (Extra data)")
    assert refusal(f'[{{"a": {LONG}}}]\n x', "json") == one("not valid JSON (Extra data)", 2)
    # A comma after the last item: one more item is expected.
    assert refusal(f'[{{"a": {LONG}}}, ]', "json") == one("not valid JSON (Expecting value)")
    assert refusal(f'[{{"a": {LONG}}}, 3]', "json") == one("expected a JSON object", 2)
    assert refusal(f'[{{"a": {LONG}}},\n\n {{"b": ]', "json") == one(
        "not valid JSON (Expecting value)", 3
    )


def test_an_item_nested_too_deep_that_never_ends_is_the_last() -> None:
    found = records('[{"a": 1}, ' + "[" * 100_000, "json")
    assert found[0] == (1, {"a": 1})
    assert isinstance(found[1][1], UnreadableRecord) and len(found) == 2
    assert refusal('[{"a": "' + "[" * 100_000, "json") == one(
        "not valid JSON (Unterminated string starting at)"
    )


def test_an_unfinished_string_in_a_deep_item_ends_the_file() -> None:
    found = records('[{"a": ' + "[" * 100_000 + '"open', "json")
    assert isinstance(found[0][1], UnreadableRecord) and len(found) == 1


# CSV ---------------------------------------------------------------------------------------------


def test_csv_rows_are_text_records_without_their_empty_cells() -> None:
    text = ' email , is_active,name\nA@x.io,,\'=x\n\nb@x.io,true,"two\nlines"\n'
    found = records(text, "csv")
    assert found == [
        (2, {"email": "A@x.io", "name": "=x"}),
        (5, {"email": "b@x.io", "is_active": "true", "name": "two\nlines"}),
    ]
    assert all(isinstance(record, TextRecord) for _, record in found)
    assert records(text, "csv", raw_csv=True)[0] == (2, {"email": "A@x.io", "name": "'=x"})
    assert records("email\n", "csv") == []
    assert records("", "csv") == []
    # A line of one empty quoted cell is as empty as an empty line.
    assert records('a,b\n""\n1,2\n', "csv") == [(3, {"a": "1", "b": "2"})]


def test_a_csv_header_names_each_column_once() -> None:
    assert refusal("email,,name\n", "csv") == one("the header has an empty column name")
    assert refusal("email,name, email\n", "csv") == one("the header names 'email' twice")


def test_a_csv_row_has_the_header_s_number_of_cells() -> None:
    assert refusal("a,b\n1,2\n1,2,3\n", "csv") == one("expected 2 fields, found 3", 3)
    assert refusal("a,b\n1\n", "csv") == one("expected 2 fields, found 1", 2)


def test_malformed_csv_is_refused_with_its_line() -> None:
    assert refusal('a,b\n1,2\n"x"y,1\n', "csv") == one("malformed CSV (',' expected after '\"')", 3)


# YAML --------------------------------------------------------------------------------------------


def test_yaml_items_carry_the_line_they_start_on_and_dates_as_text() -> None:
    text = "# users\n- email: a@x.io\n  since: 2024-01-02\n\n- email: b@x.io\n  at: 2024-01-02T03:04:05\n  n: 3\n"
    assert records(text, "yaml") == [
        (2, {"email": "a@x.io", "since": "2024-01-02"}),
        (5, {"email": "b@x.io", "at": "2024-01-02T03:04:05", "n": 3}),
    ]
    assert records("", "yaml") == []
    assert records("# nothing\n", "yaml") == []


def test_yaml_must_be_a_list_of_mappings_with_text_keys() -> None:
    assert refusal("email: a@x.io\n", "yaml") == one("expected a YAML list of users")
    assert refusal("- email: a@x.io\n- just text\n", "yaml") == one(
        "expected a mapping of field names to values", 2
    )
    assert refusal("- email: a@x.io\n- 1: x\n", "yaml") == one("field names must be text", 2)
    assert refusal("- email: a@x.io\n- [unclosed\n", "yaml") == one(
        "not valid YAML (expected ',' or ']', but got '<stream end>')", 3
    )
    assert refusal("- !!python/object:os.system x\n", "yaml") == one(
        "not valid YAML (could not determine a constructor for the tag "
        "'tag:yaml.org,2002:python/object:os.system')"
    )


def test_a_character_yaml_does_not_allow_is_refused_with_its_line() -> None:
    # PyYAML refuses it when the loader is made, with a position and no mark: this was an
    # unexpected ReaderError (exit 1) rather than a refusal of the file.
    assert refusal('- email: a@x.io\n- email: b@x.io\n  note: "\x07"\n', "yaml") == one(
        "not valid YAML (unacceptable character #x0007: special characters are not allowed "
        'in "<unicode string>", position 41)',
        3,
    )
    assert refusal('\n- email: a@x.io\n  note: "\x07"\n', "yaml") == one(
        "not valid YAML (unacceptable character #x0007: special characters are not allowed "
        'in "<unicode string>", position 26)',
        3,
    )
    assert refusal("\x00", "yaml") == one(
        "not valid YAML (unacceptable character #x0000: special characters are not allowed "
        'in "<unicode string>", position 0)'
    )


def test_yaml_nested_too_deep_is_refused() -> None:
    assert refusal("- a: " + "[" * 100_000 + "]" * 100_000 + "\n", "yaml") == one(NESTING_TOO_DEEP)


# The problems reported -------------------------------------------------------------------------


def test_problems_keep_the_first_twenty_and_count_the_rest() -> None:
    problems = Problems(Problem(line, "bad") for line in range(1, 26))
    assert len(problems) == 25 and problems.count == 25
    assert [problem.line for problem in problems] == list(range(1, 21))
    listed = "; ".join(f"line {line}: bad" for line in range(1, 21))
    assert problems.listed() == f"{listed}; and 5 more"
    exactly = Problems(Problem(line, "bad") for line in range(1, 21))
    assert exactly.listed() == listed
    one_more = Problems(Problem(line, "bad") for line in range(1, 22))
    assert one_more.listed() == f"{listed}; and 1 more"
    assert Problems().listed() == "" and len(Problems()) == 0


def test_refusals_say_how_many_rows_and_what() -> None:
    one_row = ImportRejected([Problem(3, "bad email")])
    assert str(one_row) == "1 row is invalid, nothing was written: line 3: bad email"
    two = ImportRejected(Problems([Problem(1, "a"), Problem(2, "b")]))
    assert str(two) == "2 rows are invalid, nothing was written: line 1: a; line 2: b"
    assert two.problems.count == 2 and isinstance(two, InvalidInput)
    clash = ImportConflict([Problem(4, "a@x.io exists")])
    assert str(clash) == (
        "1 row(s) conflict with existing users, nothing was written "
        "(use --on-conflict skip or update): line 4: a@x.io exists"
    )
    assert isinstance(clash, Conflict) and clash.problems.count == 1
    kept = Problems([Problem(9, "c")])
    assert ImportConflict(kept).problems is kept and ImportRejected(kept).problems is kept


def test_the_summary_as_a_dict() -> None:
    summary = ImportSummary(created=1, updated=2, skipped=3, invalid=4, revoked_tokens=5)
    summary.dry_run = True
    summary.hash_note = "bcrypt"
    assert json.dumps(summary.as_dict()) == (
        '{"created": 1, "updated": 2, "skipped": 3, "invalid": 4, "revoked_tokens": 5, '
        '"dry_run": true}'
    )
    assert ImportSummary().as_dict() == {
        "created": 0,
        "updated": 0,
        "skipped": 0,
        "invalid": 0,
        "revoked_tokens": 0,
        "dry_run": False,
    }
