"""`runner snapshots`: what the repositories hold, to choose what to restore; `runner snapshots show ID`:
what one snapshot holds, in its source's own terms (each source says it: runner/sources/<name>/contents.py)."""

from __future__ import annotations

import json
import sys
from typing import Any

import click
from rich import box
from rich.markup import escape
from rich.table import Table

from runner.cli.base import (
    EXIT_FAILED,
    Context,
    cli,
    console,
    destination_option,
    engine_for,
    fail,
    json_option,
    pass_context,
    selection,
)
from runner.restic import Snapshot
from runner.units import size_text


class ListsByDefault(click.Group):
    """`runner snapshots [SOURCE]...` is `runner snapshots list [SOURCE]...`."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if not args or (args[0] not in self.commands and args[0] not in ("-h", "--help")):
            args = ["list", *args]
        return super().parse_args(ctx, args)


@cli.group(cls=ListsByDefault)
def snapshots() -> None:
    """Browse the backups: `runner snapshots [SOURCE]...` lists each repository's snapshots (the default
    command), `runner snapshots show ID` says what one holds. Any id they print works as a restore's
    --snapshot."""


@snapshots.command("list", short_help="Each repository's snapshots (the default command).")
@click.argument("source_names", nargs=-1, metavar="[SOURCE]...")
@destination_option
@json_option
@pass_context
def snapshots_list(context: Context, source_names: tuple[str, ...], destination_names: tuple[str, ...],
                   as_json: bool) -> None:
    """List the snapshots of each repository (SOURCE: vault, postgres, minio, files; default: every enabled one):
    id, time, the size the backup read, tags, whether a manifest is stored beside it (PostgreSQL's table
    manifest: `no` where the repository keeps them but this snapshot has none) and when a restore test last
    passed on it (from the run history). Newest last. Takes the runner's lock on each repository while reading."""
    from runner.restoring import RestoreError, listing, passed_tests

    chosen, names = selection(context, destination_names, source_names)
    engine = engine_for(context)
    problem = ""
    try:
        tested: dict[tuple[str, str, str], str] | None = passed_tests(context.settings)
    except RestoreError as error:
        tested, problem = None, str(error)
    listings = [listing(context.settings, engine, destination, name, tested or {})
                for destination in chosen for name in names]
    code = EXIT_FAILED if problem or any(each.error for each in listings) else 0
    if as_json:
        click.echo(json.dumps([{
            "source": each.source, "destination": each.destination, "location": each.location,
            "error": each.error or None, "restore_tests_known": tested is not None,
            "snapshots": [{**snapshot_fields(row.snapshot), "manifest_id": row.manifest.id if row.manifest else None,
                           "restore_test_passed_at": row.tested} for row in each.snapshots],
            "manifests": [{**snapshot_fields(manifest), "for": each.owner(manifest)} for manifest in each.manifests],
        } for each in listings], indent=2))
        sys.exit(code)
    out = console()
    for each in listings:
        out.print(f"[bold]{each.source}[/] on [bold]{escape(each.destination)}[/]: {escape(each.location)}",
                  highlight=False)
        if each.error:
            out.print(f"  [red]cannot be listed:[/] {escape(each.error)}", highlight=False)
            continue
        if not each.snapshots:
            out.print("  no snapshots")
            continue
        table = plain_table("id", "time", "size", "tags", "manifest", "tested")
        for row in each.snapshots:
            manifest = "yes" if row.manifest else "no" if each.keeps_manifests else "-"
            tested_text = "?" if tested is None else (row.tested or "-")[:10]
            table.add_row(row.snapshot.short_id, time_text(row.snapshot), size_text(row.snapshot.size),
                          escape(" ".join(shown_tags(row.snapshot))), manifest, tested_text)
        out.print(table)
    if problem:
        out.print(f"[red]{escape(problem)}[/]: the tested column shows ?", highlight=False)
    sys.exit(code)


@snapshots.command("show", short_help="What one snapshot holds, in its source's terms.")
@click.argument("snapshot_id", metavar="ID")
@click.option("--source", "-s", "source_name", help="The source whose repository holds it (default: look in each "
                                                     "enabled one). Needed for ID 'latest'.")
@click.option("--destination", "-d", "destination_name", help="Destination to read from (default: the first "
                                                               "enabled).")
@click.option("--prefix", help="Only what lies under it: for MinIO BUCKET/KEY-PREFIX (lists those objects), for "
                               "plain files a path (its subtree).")
@json_option
@pass_context
def snapshots_show(context: Context, snapshot_id: str, source_name: str | None, destination_name: str | None,
                   prefix: str | None, as_json: bool) -> None:
    """Say what snapshot ID (its id or first characters, as `runner snapshots` prints them) holds, in its
    source's terms: PostgreSQL its databases and tables with their row counts (from the manifest stored
    beside it), MinIO its buckets with object counts and sizes (from its manifest.json) or the objects
    under --prefix, Vault the raft index and term (from the snapshot file's meta.json, sums verified),
    plain files the tree. Only what is needed is fetched, never the whole snapshot."""
    from runner.repository import RepositoryError
    from runner.restoring import RestoreError, destination_for, show
    from runner.sources import SOURCES

    settings = context.settings
    _, names = selection(context, (), (source_name,) if source_name else ())
    try:
        shown = show(settings, engine_for(context), destination_for(settings, destination_name),
                     [SOURCES[name] for name in names], snapshot_id, prefix)
    except (RestoreError, RepositoryError) as error:
        fail(f"cannot show {snapshot_id}: {error}")
    snapshot, contents = shown.snapshot, shown.contents
    if as_json:
        click.echo(json.dumps({"source": shown.source, "destination": shown.destination, "location": shown.location,
                               "snapshot": snapshot_fields(snapshot), "summary": contents.summary,
                               "contents": contents.data}, indent=2, default=str))
        return
    out = console()
    out.print(f"[bold]{shown.source}[/] snapshot [bold]{snapshot.short_id}[/] of {time_text(snapshot)} on "
              f"{escape(shown.destination)} ({escape(shown.location)})", highlight=False)
    out.print(escape(contents.summary), highlight=False)
    if contents.rows:
        table = plain_table(*contents.columns)
        for row in contents.rows:
            table.add_row(*map(escape, row))
        out.print(table)


def plain_table(*columns: str) -> Table:
    """A table flush with the left margin whose cells wrap but are never cut short: ids and paths are copied
    from it."""
    table = Table(*columns, box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, show_header=any(columns))
    for column in table.columns:
        column.overflow = "fold"
    return table


def time_text(snapshot: Snapshot) -> str:
    """restic's time to the minute, in the time zone the backup ran in: '2026-11-30 02:00'."""
    return snapshot.time[:16].replace("T", " ")


def snapshot_fields(snapshot: Snapshot) -> dict[str, Any]:
    return {"id": snapshot.id, "short_id": snapshot.short_id, "time": snapshot.time, "size": snapshot.size,
            "tags": list(snapshot.tags), "paths": list(snapshot.paths), "hostname": snapshot.hostname}


def shown_tags(snapshot: Snapshot) -> list[str]:
    """The tags a person reads: the run:<key> that links a dump with its manifest is left out."""
    return [tag for tag in snapshot.tags if not tag.startswith("run:")]
