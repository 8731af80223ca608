"""Reproducible measurements of anneal against the tools it wraps (`make bench`)."""
