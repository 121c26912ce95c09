"""Reading, checking, planning and writing users from a file: the machinery import-users and
apply share, one module per stage.

- ``reading``: the formats (JSON lines, CSV, a JSON array) as records with their line numbers;
- ``checking``: each record against the user table, duplicates, hashing;
- ``planning``: which users the rows match in the database, and what to do with each;
- ``writing``: inserts and updates in the caller's transaction;
- ``importer``: import-users from end to end;
- ``applying``: apply, which decides by comparing each entry with its user, and prunes.

The names other modules use are importable from here, as when this was one module.
"""

from usersctl.importing.checking import (
    NO_PASSWORD_FOR_NEW_USER,
    REQUIRED_FIELDS,
    FileCheck,
    RowValidator,
    check_with_app,
    hash_passwords,
)
from usersctl.importing.importer import import_users
from usersctl.importing.planning import passwords_worth_hashing
from usersctl.importing.reading import TextRecord, UnreadableRecord, format_for, read_records
from usersctl.importing.rows import (
    CONFLICT_RULES,
    FLAGS,
    FORMATS,
    ImportConflict,
    ImportRejected,
    ImportSummary,
    Problem,
    Problems,
    Progress,
    Row,
)
from usersctl.importing.writing import (
    PreparedInsert,
    _sqlite_multi_row,
    prepare_inserts,
    sqlite_variable_limit,
    write_rows,
)

__all__ = [
    "CONFLICT_RULES",
    "FLAGS",
    "FORMATS",
    "NO_PASSWORD_FOR_NEW_USER",
    "REQUIRED_FIELDS",
    "FileCheck",
    "ImportConflict",
    "ImportRejected",
    "ImportSummary",
    "PreparedInsert",
    "Problem",
    "Problems",
    "Progress",
    "Row",
    "RowValidator",
    "TextRecord",
    "UnreadableRecord",
    "_sqlite_multi_row",
    "check_with_app",
    "format_for",
    "hash_passwords",
    "import_users",
    "passwords_worth_hashing",
    "prepare_inserts",
    "read_records",
    "sqlite_variable_limit",
    "write_rows",
]
