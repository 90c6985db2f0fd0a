"""The restores a person runs after a disaster."""

from __future__ import annotations

from pathlib import Path

import click

from runner.cli.base import (
    Context,
    engine_for,
    cli,
    fail,
    pass_context,
)


@cli.group()
def restore():
    """Recover after a disaster, in this order: vault, then postgres, then minio."""


snapshot_option = click.option("--snapshot", default="latest", show_default=True,
                               help="Snapshot id (or its first characters) to restore.")


restore_destination_option = click.option("--destination", "-d", "destination_name",
                                          help="Destination to restore from (default: the first enabled).")


force_option = click.option("--force", is_flag=True, help="Overwrite a target that is not empty.")


def run_restore(context: Context, action) -> None:
    from runner.recover import RestoreError

    try:
        click.echo(action())
    except RestoreError as error:
        fail(f"restore failed: {error}")


@restore.command("vault")
@click.option("--output", "-o", required=True, type=click.Path(path_type=Path, dir_okay=False),
              help="File to write the raft snapshot to.")
@snapshot_option
@restore_destination_option
@force_option
@pass_context
def restore_vault_command(context: Context, output, snapshot, destination_name, force):
    """Write a Vault raft snapshot to a file, its sums verified, ready for
    `vault operator raft snapshot restore -force FILE`."""
    from runner import recover

    run_restore(context, lambda: recover.restore_vault(
        context.settings, engine_for(context), recover.destination_for(context.settings, destination_name),
        snapshot, output, force))


@restore.command("postgres")
@click.option("--container", help="Podman container running the PostgreSQL to restore into.")
@click.option("--host", help="Or: host name or address of the server ...")
@click.option("--network", help="... and the Podman network it is reached on.")
@click.option("--port", default=5432, show_default=True, type=int)
@click.option("--user", help="Superuser to load as (default: sources.postgres.user).")
@click.option("--pgpass", type=click.Path(path_type=Path, dir_okay=False, exists=True),
              help="pgpass file with that user's password (default: the configured one, if it exists).")
@snapshot_option
@restore_destination_option
@force_option
@pass_context
def restore_postgres_command(context: Context, container, host, network, port, user, pgpass, snapshot,
                             destination_name, force):
    """Load a pg_dumpall snapshot into a running PostgreSQL, stopping at the first error.
    Refuses a server that already holds databases or tables unless --force."""
    from runner import recover
    from runner.sources import postgres

    settings = context.settings
    configured_pgpass = postgres.pgpass_file(settings)
    run_restore(context, lambda: recover.restore_postgres(
        settings, engine_for(context), recover.destination_for(settings, destination_name), snapshot,
        container=container, host=host, port=port, network=network, user=user or settings.sources.postgres.user,
        pgpass=pgpass or (configured_pgpass if configured_pgpass.exists() else None), force=force))


@restore.command("minio")
@click.option("--to-dir", "target", required=True, type=click.Path(path_type=Path, file_okay=False),
              help="Directory to restore the objects (objects/<bucket>/<key>) and their manifest into.")
@click.option("--endpoint", help="Also upload every object to this S3 endpoint (a new MinIO), with its content "
                                 "type and metadata.")
@click.option("--credentials-file", type=click.Path(path_type=Path, dir_okay=False, exists=True),
              help="Access keys for --endpoint (AWS shared-credentials format; default: sources.minio's).")
@click.option("--network", help="Podman network to reach --endpoint on (default: sources.minio.network).")
@snapshot_option
@restore_destination_option
@force_option
@pass_context
def restore_minio_command(context: Context, target, endpoint, credentials_file, network, snapshot, destination_name,
                          force):
    """Restore the MinIO mirror: every object, and the manifest of their content types and metadata;
    with --endpoint, upload them back into an S3 server too."""
    from runner import recover

    run_restore(context, lambda: recover.restore_minio(
        context.settings, engine_for(context), recover.destination_for(context.settings, destination_name),
        snapshot, target, force, endpoint, credentials_file, network))
