"""Commands that set up and check the installation: config, images, jobs, selftest."""

from __future__ import annotations

import json
import time
from datetime import datetime
from pathlib import Path

import click
import tomli_w

from runner.cli.base import (
    Context,
    cli,
    console,
    engine_for,
    fail,
    fixed,
    pass_context,
    table,
)
from runner.settings import redacted
from runner.units import age_text, size_text


@cli.group()
def config():
    """Validate and display the configuration."""


@config.command("check")
@click.argument("path", required=False, type=click.Path(path_type=Path, dir_okay=False))
@pass_context
def config_check(context: Context, path: Path | None):
    """Validate the configuration (PATH, or the one --config/RUNNER_CONFIG selects).

    Every mistake is reported at once, each naming the setting and the file or environment
    variable it came from. Exit code 2 when anything is wrong."""
    if path is not None:
        context.config = path
    loaded = context.load()
    where = loaded.path or "built-in defaults (no configuration file)"
    click.echo(f"configuration OK: {where}")


@config.command("show")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of TOML.")
@pass_context
def config_show(context: Context, as_json: bool):
    """Print the effective configuration (defaults, file and environment merged), with
    secret-looking values masked."""
    loaded = context.load()
    data = redacted(loaded.settings.model_dump(mode="json", exclude_none=True))
    click.echo(f"# effective configuration from {loaded.path or 'built-in defaults'} and RUNNER_* environment")
    click.echo("# (settings left empty to take a derived default are omitted)")
    click.echo(json.dumps(data, indent=2) if as_json else tomli_w.dumps(data))


@config.command("reference")
@click.option("--output", "-o", type=click.Path(path_type=Path, dir_okay=False),
              help="Write to this file (docs/configuration.md) instead of standard output.")
def config_reference(output: Path | None):
    """Print the configuration reference (Markdown) generated from the settings schema."""
    from runner.reference import render

    text = render()
    if output:
        output.write_text(text)
        click.echo(f"wrote {output}")
    else:
        click.echo(text, nl=False)


@cli.group()
def images():
    """Build the project's container images."""


@images.command("build")
@click.argument("names", nargs=-1)
@click.option("--force", is_flag=True, help="Rebuild even when the inputs are unchanged.")
@pass_context
def images_build(context: Context, names: tuple[str, ...], force: bool):
    """Build the tools, runner and openbao images, or the NAMES given: those, the stand-ins for
    the integration suite and the demo (testbed-nas, ...), or `all`.

    An image whose inputs (Containerfile, base image, runner source) are unchanged is skipped.
    When the base image can be neither found nor pulled, it is built from the Debian mirror with
    debootstrap, so an air-gapped host with a Debian mirror can build everything."""
    from runner.images import ImageBuildError, build

    try:
        report = build(context.settings, names or None, force)
    except ImageBuildError as error:
        fail(str(error))
    for name, state in report.items():
        click.echo(f"{name}: {state}")


@cli.group()
def jobs():
    """Inspect and clean up job containers."""


@jobs.command("list")
@pass_context
def jobs_list(context: Context):
    """List this installation's job containers that exist now (a finished job leaves none).

    Another installation on the same host (a demo beside production: another paths.state_dir) has its
    own; containers of a runner from before containers were labelled by installation are listed too."""
    from runner.engine import JOB_LABEL

    shown = table("container", "job", fixed("state"), fixed("created"))
    for container in engine_for(context).job_containers():
        shown.add_row(container.name, container.labels.get(JOB_LABEL, "?"), container.attrs.get("State", "?"),
                      created_text(container.attrs.get("Created")))
    console().print(shown)


def created_text(created) -> str:
    """Podman's creation time (seconds since the epoch, or an ISO 8601 text) as how long ago."""
    if isinstance(created, int | float):
        return age_text(time.time() - created)
    try:
        when = datetime.fromisoformat(str(created).replace("Z", "+00:00"))
    except ValueError:
        return str(created or "?")
    return age_text(time.time() - when.timestamp())


@jobs.command("gc")
@click.option("--all", "everything", is_flag=True,
              help="Also remove this installation's job containers that are still running within their time limit.")
@click.option("--dry-run", is_flag=True, help="Only list what would be removed.")
@pass_context
def jobs_gc(context: Context, everything: bool, dry_run: bool):
    """Remove this installation's job containers left behind by a crashed run: stopped or never-started
    ones, and running ones past their time limit; then its restore tests' networks no container uses.

    Another installation's containers and networks on the same host (another paths.state_dir) are left
    alone. Those of a runner from before containers were labelled by installation are removed when stopped
    or overdue, never while running (even with --all): they may be another installation's live jobs."""
    engine = engine_for(context)
    leftovers = engine.leftovers(include_running=everything)
    for container in leftovers:
        click.echo(f"{'would remove' if dry_run else 'removing'} {container.name}")
        if not dry_run:
            engine.remove(container)
    click.echo(f"{len(leftovers)} leftover job container(s)")
    if not dry_run:
        for name in engine.remove_unused_networks():
            click.echo(f"removed unused network {name}")


@cli.command()
@click.option("--path", type=click.Path(path_type=Path, exists=True, file_okay=False, resolve_path=True),
              help="Back up this directory instead of a generated sample (it must be readable by jobs.user).")
@pass_context
def selftest(context: Context, path: Path | None):
    """Check that this host can run backups: a job container backs up a sample directory into
    a local restic repository (under paths.state_dir/selftest), another restores it, the restored
    files are compared with the originals, and the repository's snapshots are listed."""
    from runner.engine import JobError
    from runner.selftest import Selftest, SelftestFailed

    engine = engine_for(context)
    try:
        report = Selftest(context.settings, engine).run(path)
    except (SelftestFailed, JobError) as error:
        fail(f"selftest failed: {error}")
    shown = table(fixed("snapshot"), fixed("time"), "host", "paths", "tags", title=f"snapshots in {report.repository}")
    for snapshot in report.snapshots:
        shown.add_row(snapshot.short_id, snapshot.time[:19].replace("T", " "), snapshot.hostname,
                      " ".join(snapshot.paths), " ".join(snapshot.tags))
    console().print(shown)
    click.echo(f"selftest passed: snapshot {report.snapshot_id[:8]} ({report.files} files, {size_text(report.bytes)}) "
               "restored byte-identical")
