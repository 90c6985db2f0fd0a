"""`runner restore <source>`: the restores a person runs after a disaster, one command per source,
made from the source registry (each source's restore names its own options)."""

from __future__ import annotations

from typing import Any

import click

from runner.cli.base import Context, cli, engine_for, fail, pass_context
from runner.sources import SOURCES, Source


class InRestoreOrder(click.Group):
    """Lists the sources' commands in the order a disaster recovery runs them."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(self.commands)


@cli.group(cls=InRestoreOrder)
def restore() -> None:
    """Recover after a disaster, in this order: vault, then postgres, then minio, then files."""


COMMON_OPTIONS = [
    click.Option(["--snapshot"], default="latest", show_default=True,
                 help="Snapshot to restore: an id as `runner snapshots` prints it, or its first characters "
                      "(a prefix several snapshots share is refused)."),
    click.Option(["--destination", "-d", "destination_name"],
                 help="Destination to restore from (default: the first enabled)."),
    click.Option(["--force"], is_flag=True, help="Overwrite a target that is not empty."),
]


def restore_command(source: Source) -> click.Command:
    @pass_context
    def run(context: Context, snapshot: str, destination_name: str | None, force: bool, **options: Any) -> None:
        from runner.repository import RepositoryError
        from runner.restoring import RestoreError, RestoreRequest, destination_for

        try:
            request = RestoreRequest(context.settings, engine_for(context),
                                     destination_for(context.settings, destination_name), snapshot, force, options)
            click.echo(source.restore(request))
        except (RestoreError, RepositoryError) as error:
            fail(f"restore failed: {error}")

    return click.Command(source.NAME, callback=run, params=[*source.RESTORE_OPTIONS, *COMMON_OPTIONS],
                         help=source.restore.__doc__)


for _source in SOURCES.values():
    restore.add_command(restore_command(_source))
