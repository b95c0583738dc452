"""Typed records, enums, settings and errors shared by connectors, flows and sinks."""
