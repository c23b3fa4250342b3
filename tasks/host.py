"""Host preparation (placeholder: see issue 5)."""

from invoke import Collection

ns = Collection("host")
