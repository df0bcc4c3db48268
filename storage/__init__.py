"""DuckDB history: the explicit, versioned schema, the batch writer and the queries."""
