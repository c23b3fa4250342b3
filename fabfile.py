"""`fab` entry point: the same collection as `invoke` (see tasks/__init__.py)."""

from tasks import ns

__all__ = ["ns"]
