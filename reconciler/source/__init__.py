"""The config repository: fetch a branch into a local mirror and read manifests at a SHA."""

from reconciler.source.git import Commit, GitSource, SourceError, read_tree_at, redact_url, resolve_at

__all__ = ["Commit", "GitSource", "SourceError", "read_tree_at", "redact_url", "resolve_at"]
