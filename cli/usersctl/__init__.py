"""usersctl: user administration for FastAPI Users' SQL user tables."""

__version__ = "0.1.0"

#: Where usersctl works when no URL is given: a SQLite file in the current folder. Kept here,
#: with nothing heavy around it, so that the command line can show it without importing SQLAlchemy.
DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///./users.db"
