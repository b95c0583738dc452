"""Command-line tools over the store and the flow: reports, baselines, queries."""
