"""The `runner` command: parse, call, and turn errors into clear messages and exit codes.
One module per group of commands; base holds the group, the context and what they share."""

from runner.cli import (  # noqa: F401
    configuration,
    internal,
    monitoring,
    recovery,
    repositories,
    runs,
    secrets,
)
from runner.cli.base import cli, main

__all__ = ["cli", "main"]
