"""SQLAlchemy implementation of the evaluation store (SQLite by default, PostgreSQL by URL)."""
