"""Collaborative-filtering ranking, two-stage recommendation, offline evaluation and the CLI."""

__version__ = "0.1.0"
