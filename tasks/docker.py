"""Docker daemon configuration (placeholder: see issue 5)."""

from invoke import Collection

ns = Collection("docker")
