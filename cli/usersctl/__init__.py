"""usersctl: user administration for FastAPI Users' SQL user tables."""

__version__ = "0.1.0"
