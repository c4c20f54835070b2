"""Typed YAML configs (pydantic, extra="forbid"): one module per stage."""
