"""Shipped default model bundle(s), used when no --bundle is given."""
