"""Helpers with no stability promise."""
