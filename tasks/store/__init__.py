"""Provenance in DuckDB: the connection and its migrations (db, schema), history queries and voice records."""
