"""The `runner` command: parse, call, and turn errors into clear messages and exit codes.
One module per group of commands; base holds the group, the context and what they share."""

from runner.cli import (  # noqa: F401 (each module adds its commands to the group)
    configuration,
    monitoring,
    recovery_kit,
    repositories,
    restore,
    runs,
    snapshots,
    vault,
)
from runner.cli.base import cli, main

__all__ = ["cli", "main"]
