"""Tests of the SQL stores beyond the conformance suite: migrations, SQLite specifics,
several processes on one database file."""
