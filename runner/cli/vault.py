"""`runner vault`: bootstrap, the agent configuration, the policy."""

from __future__ import annotations

from pathlib import Path

import click

from runner.cli.base import (
    Context,
    cli,
    fail,
    pass_context,
)


@cli.group()
def vault():
    """Prepare Vault for the backups and configure the Vault Agent that renders their secrets."""


@vault.command("bootstrap")
@click.option("--token-file", type=click.File("r"),
              help="File holding an administrator token ('-' for standard input). Without it, the token "
                   "is asked for at a prompt. Never pass a token on the command line.")
@pass_context
def vault_bootstrap(context: Context, token_file):
    """Create in Vault what the backups need, with an administrator token used once.

    Creates what is missing and leaves the rest alone (safe to re-run): the KV version 2 engine
    and the AppRole auth method if absent, the least-privilege policy (read the backup secrets,
    read sys/storage/raft/snapshot, nothing else), the AppRole, its role-id and secret-id files
    (secrets.approle_dir), and a generated password for every repository that has none yet (an
    existing password is never overwritten). Lists the secrets you still have to put in Vault."""
    from runner.secrets.bootstrap import BootstrapError, bootstrap

    token = (token_file.read() if token_file else click.prompt("Vault administrator token", hide_input=True)).strip()
    if not token:
        raise click.UsageError("the administrator token is empty")
    try:
        report = bootstrap(context.settings, token)
    except BootstrapError as error:
        fail(str(error))
    for line in report.created:
        click.echo(f"created:   {line}")
    for line in report.unchanged:
        click.echo(f"unchanged: {line}")
    for line in report.missing:
        click.echo(f"missing:   {line}")
    if report.missing:
        click.echo(f"Put the missing values with `vault kv put {context.settings.secrets.kv_mount}/"
                   f"{context.settings.secrets.kv_prefix}/<path> key=value ...` (or `key=@file`).")


@vault.command("agent-config")
@click.option("--output", "-o", type=click.Path(path_type=Path, dir_okay=False),
              help="Write to this file instead of standard output.")
@pass_context
def vault_agent_config(context: Context, output: Path | None):
    """Print the Vault Agent configuration (HCL) for this configuration: AppRole auto-auth,
    its token as the snapshot token, and one template per secret file, mode 0400."""
    from runner.secrets.agent import agent_config
    from runner.workspace import write_atomically

    loaded = context.load()
    text = agent_config(loaded.settings, str(loaded.path or "the built-in defaults"))
    if output:
        write_atomically(output, text, mode=0o644)
        click.echo(f"wrote {output}")
    else:
        click.echo(text, nl=False)


@vault.command("policy")
@pass_context
def vault_policy(context: Context):
    """Print the least-privilege policy that `vault bootstrap` writes."""
    from runner.secrets.agent import policy

    click.echo(policy(context.settings), nl=False)
