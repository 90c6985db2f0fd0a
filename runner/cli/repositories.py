"""Commands on the repositories: repo init, repo list, quota."""

from __future__ import annotations

import json
import sys

import click
from rich.markup import escape

from runner.cli.base import (
    EXIT_FAILED,
    Context,
    as_dict,
    cli,
    console,
    destination_option,
    engine_for,
    fixed,
    json_option,
    number_text,
    pass_context,
    report,
    selection,
    source_option,
    table,
)
from runner.units import size_text


@cli.group()
def repo():
    """Create and inspect the restic repositories (one per source per destination)."""


@repo.command("init")
@destination_option
@source_option
@json_option
@pass_context
def repo_init(context: Context, destination_names, source_names, as_json):
    """Initialize the repositories that do not exist yet (repository format 2, compressed).

    Idempotent: existing repositories are left as they are. Backups never create repositories;
    this command is the only one that does. Each repository's password is read from its password
    file (restic.password_file), so it must exist first."""
    from runner import inventory

    chosen, names = selection(context, destination_names, source_names)
    report(inventory.init(engine_for(context), chosen, names), as_json)


@repo.command("list")
@destination_option
@source_option
@json_option
@pass_context
def repo_list(context: Context, destination_names, source_names, as_json):
    """Show each repository: whether it is reachable and initialized, its snapshot count and size.

    Takes no restic lock and writes nothing."""
    from runner import inventory

    chosen, names = selection(context, destination_names, source_names)
    states = inventory.describe(engine_for(context), chosen, names)
    code = 0 if all(s.state == "ok" for s in states) else EXIT_FAILED
    if as_json:
        click.echo(json.dumps([as_dict(s) for s in states], indent=2))
        sys.exit(code)
    shown = table(fixed("destination"), fixed("source"), "location", "state", fixed("snapshots", justify="right"),
                  fixed("stored", justify="right"), fixed("uncompressed", justify="right"))
    for s in states:
        shown.add_row(s.destination, s.source, escape(s.location), escape(s.state), number_text(s.snapshots),
                      size_text(s.stored_bytes), size_text(s.uncompressed_bytes))
    console().print(shown)
    sys.exit(code)


@cli.command()
@pass_context
def quota(context: Context):
    """Show each destination's upload quota and what the ledger counts as uploaded today (UTC)."""
    from runner import destinations
    from runner.quota import ledger

    uploads = ledger(context.settings.paths.state_dir)
    shown = table(fixed("destination"), *(fixed(heading, justify="right")
                                          for heading in ("daily quota", "uploaded today", "remaining")))
    for destination in destinations.configured(context.settings):
        used = uploads.uploaded_today(destination.name)
        limit = destination.quota
        shown.add_row(destination.name, size_text(limit) if limit else "none", size_text(used),
                      size_text(max(0, limit - used)) if limit else "-")
    console().print(shown)
