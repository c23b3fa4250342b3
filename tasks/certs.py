"""Private PKI with cfssl (placeholder: see issue 4)."""

from invoke import Collection

ns = Collection("certs")
