"""Reproducible measurements of anneal against the tools it wraps (`make bench`)."""

# Ray reads its authentication mode once, when it is first imported, and anneal's clusters keep
# token authentication on: `cluster` sets the mode, so it is imported before any benchmark
# module imports ray.
import cluster  # noqa: F401
