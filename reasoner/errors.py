"""Errors raised for bad input, each with a message that says what to change."""

from __future__ import annotations


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the field and the fix.

    Raised before any heavy work (model loading, downloads), so a wrong config
    costs seconds, not minutes.
    """
