"""Commands on the repositories: repo init, repo list, repo rotate-key, quota."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click
from loguru import logger
from rich.markup import escape

from runner.cli.base import (
    EXIT_FAILED,
    Context,
    as_dict,
    cli,
    console,
    destination_option,
    engine_for,
    fail,
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


@repo.command("rotate-key")
@click.argument("source_names", metavar="[SOURCE]...", nargs=-1)
@destination_option
@click.option("--token-file", type=click.File("r"),
              help="File holding a Vault token that may write the repository passwords ('-' for standard "
                   "input), as for `vault bootstrap`. Without it, the token is asked for at a prompt. Never pass "
                   "a token on the command line.")
@click.option("--wait", type=click.IntRange(min=1), metavar="SECONDS",
              help="How long to wait for the Vault Agent to render the new password. Default: twice "
                   "secrets.render_interval, plus 30 s.")
@click.option("--write-kit", type=click.Path(path_type=Path, dir_okay=False), metavar="FILE",
              help="After the rotation, write a new recovery kit to FILE (mode 0400; FILE must not exist).")
@json_option
@pass_context
def repo_rotate_key(context: Context, source_names, destination_names, token_file, wait, write_kit, as_json):
    """Give each SOURCE's repositories a new password (default: every enabled source).

    For each source: restic adds a key for a new random password to every repository of the source,
    the password is stored in Vault, the command waits until the Vault Agent has rendered it into
    the password files, proves each repository opens with the rendered file, and only then removes
    the old key. Interrupted at any step, every repository still opens with the password Vault holds.

    A source's password is one Vault secret that all enabled destinations use, so a source is rotated
    on all of them together: --destination may only name them all. Write a new recovery kit afterwards
    (or give --write-kit): the old kit's passwords no longer open anything."""
    from runner import destinations
    from runner.secrets.bootstrap import BootstrapError, admin_client
    from runner.secrets.recovery_kit import RecoveryKitError, build
    from runner.secrets.rotation import default_wait, rotate
    from runner.workspace import write_atomically

    settings = context.settings
    chosen, names = selection(context, destination_names, source_names)
    left_out = [d.name for d in destinations.configured(settings) if d.name not in destination_names]
    if destination_names and left_out:
        raise click.UsageError(f"each source's password is shared by every enabled destination: rotating it on "
                               f"{', '.join(destination_names)} only would lock {', '.join(left_out)} out; "
                               "leave out --destination")
    if write_kit and write_kit.exists():
        raise click.UsageError(f"{write_kit} exists: give --write-kit a new file")
    for name, config in settings.destinations.items():
        if not config.enabled:
            logger.warning("destination {} is disabled: its repositories keep the old password only", name)
    token = (token_file.read() if token_file else click.prompt("Vault token", hide_input=True)).strip()
    if not token:
        raise click.UsageError("the Vault token is empty")
    try:
        client = admin_client(settings, token)
    except BootstrapError as error:
        fail(str(error))
    engine = engine_for(context)
    results = []
    for source in names:
        results += rotate(settings, engine, client, source, chosen, wait or default_wait(settings))
    if any(result.status.value == "ok" for result in results):
        if write_kit:
            try:
                write_atomically(write_kit, build(settings), mode=0o400)
                click.echo(f"wrote a new recovery kit to {write_kit} (mode 0400): keep it offline, and destroy "
                           "the old one", err=True)
            except RecoveryKitError as error:
                logger.error("the new recovery kit could not be written: {}", error)
        else:
            click.echo("Passwords changed: the old recovery kit no longer opens these repositories. Write a new "
                       "one now with `runner recovery-kit --output FILE`, and destroy the old one.", err=True)
    report(results, as_json)
