"""Outputs: the ClickHouse store (embedded chdb or a server) and its bytewax sink."""
