"""`runner recovery-kit`: the offline document for restoring without Vault."""

from __future__ import annotations

from pathlib import Path

import click

from runner.cli.base import (
    Context,
    cli,
    fail,
    pass_context,
)


@cli.command("recovery-kit")
@click.option("--output", "-o", type=click.Path(path_type=Path, dir_okay=False),
              help="Write the kit to this file (mode 0400).")
@click.option("--stdout", "to_stdout", is_flag=True, help="Print the kit instead (for a printer or an encrypted pipe).")
@click.option("--force", is_flag=True, help="Replace an existing kit file.")
@pass_context
def recovery_kit(context: Context, output: Path | None, to_stdout: bool, force: bool):
    """Write what a person needs to restore when Vault is gone, with restic, ssh and rclone only:
    every repository's location and password, the NAS's SSH private key and pinned host key, the
    Drive's rclone remote and service-account key, and the commands, in restore order. It is the key
    to every backup: keep it offline (the file is written mode 0400); see docs/recovery-kit.md."""
    from runner.secrets.recovery_kit import RecoveryKitError, build
    from runner.workspace import write_atomically

    if bool(output) == to_stdout:
        raise click.UsageError("give either --output FILE or --stdout")
    if output and output.exists() and not force:
        raise click.UsageError(f"{output} exists; use --force to replace it")
    try:
        text = build(context.settings)
    except RecoveryKitError as error:
        fail(str(error))
    if output is None:
        click.echo(text, nl=False)
        return
    write_atomically(output, text, mode=0o400)
    click.echo(f"wrote {output} (mode 0400). It holds every repository password and the NAS and Drive keys: "
               "keep it offline, and do not leave it on this server.")
