"""The scheduled jobs: exec backup, check, prune, restore-test, copy."""

from __future__ import annotations

import click

from runner.cli.base import (
    Context,
    cli,
    destination_option,
    finish,
    job_engine,
    json_option,
    pass_context,
    record_runs,
    report,
    selection,
    tracked,
)


@cli.group("exec")
def exec_():
    """Run the scheduled jobs (what the systemd timers start)."""


@exec_.command("backup")
@click.argument("source_names", nargs=-1, metavar="[SOURCE]...")
@destination_option
@click.option("--dry-run", is_flag=True, help="Run every preflight (each source's, that its hooks' containers "
                                              "exist, each destination's, that the repository opens, the upload "
                                              "quota) and print what would be backed up where; stage, lock, "
                                              "upload, record and run no hook.")
@json_option
@pass_context
@tracked
def exec_backup(context: Context, source_names, destination_names, dry_run, as_json):
    """Back up SOURCEs: vault, postgres, minio, files, or all (the default: every enabled
    source, in restore priority order). One source failing does not stop the next.

    A destination that fails its preflight (unreachable NAS, missing key) is skipped and reported;
    the others still run. A destination whose daily upload quota would be passed is deferred. A
    destination filled by copying (copy_from) is left out: `runner exec copy` fills it.
    Exit code 1 if anything failed, 75 if nothing failed but something was deferred."""
    from runner.backup import back_up
    from runner.backup import dry_run as preview_backup
    from runner.copying import backed_up
    from runner.monitoring.pings import Pings
    from runner.sources import get

    if "all" in source_names:
        source_names = ()
    chosen, names = selection(context, destination_names, source_names)
    chosen = backed_up(chosen)
    engine = job_engine(context)
    if dry_run:
        report([result for source in names for result in preview_backup(context.settings, engine, get(source), chosen)],
               as_json)
    pings = Pings(context.settings, context.unit)
    runs = []
    for source in names:
        pings.start(f"backup-{source}")
        outcome = [("backup", result) for result in back_up(context.settings, engine, get(source), chosen)]
        record_runs(context.settings, outcome)
        pings.finish(f"backup-{source}", failed=any(result.status.is_failure for _, result in outcome))
        runs += outcome
    finish(context, runs, as_json)


def maintain_repositories(context: Context, source_names, destination_names, as_json, prune: bool, subset: str | None):
    from runner.maintenance import maintain, rotating_subset

    chosen, names = selection(context, destination_names, source_names)
    engine = job_engine(context)
    subset = rotating_subset(context.settings) if subset is None else subset
    runs = []
    for destination in chosen:
        for source in names:
            outcome = maintain(context.settings, engine, destination, source, prune=prune, subset=subset)
            record_runs(context.settings, outcome.runs)
            runs += outcome.runs
    finish(context, runs, as_json)


@exec_.command("check")
@click.argument("source_names", nargs=-1, metavar="[SOURCE]...")
@destination_option
@click.option("--subset", help="Part of the data to read: '2/8', '10%', 'all', or 'none' for the structure only. "
                               "Default: this week's 1/retention.check_weeks part, a different one each week.")
@json_option
@pass_context
@tracked
def exec_check(context: Context, source_names, destination_names, subset, as_json):
    """Verify repositories with `restic check`, reading a part of their data.

    A repository whose check fails is reported with the status 'check failed' (exit code 1), and
    `exec prune` forgets and prunes nothing in it until a check passes again."""
    if "all" in source_names:
        source_names = ()
    maintain_repositories(context, source_names, destination_names, as_json, prune=False,
              subset=None if subset is None else ("" if subset == "none" else subset))


@exec_.command("prune")
@click.argument("source_names", nargs=-1, metavar="[SOURCE]...")
@destination_option
@click.option("--dry-run", is_flag=True, help="Only show, per repository, which snapshots the policy would forget "
                                              "and keep (restic's own dry run); change, lock and record nothing.")
@json_option
@pass_context
@tracked
def exec_prune(context: Context, source_names, destination_names, dry_run, as_json):
    """Apply the retention policy: check each repository first, then forget and prune.

    Keeps the newest retention.minimum_snapshots snapshots and the most recent snapshot of each of
    the last retention.keep_daily days, keep_monthly months and keep_yearly years (restic's
    definition). Forgets nothing where the check fails or fewer than retention.minimum_snapshots
    snapshots exist. Every forgotten snapshot is logged and recorded in the history, with the
    repository's size, compression and deduplication after."""
    if "all" in source_names:
        source_names = ()
    if dry_run:
        return preview_prune(context, source_names, destination_names, as_json)
    maintain_repositories(context, source_names, destination_names, as_json, prune=True, subset=None)


def preview_prune(context: Context, source_names, destination_names, as_json) -> None:
    """Prints what prune would forget; exits (0, or 1 when a repository could not be read)."""
    from runner.maintenance import preview

    chosen, names = selection(context, destination_names, source_names)
    engine = job_engine(context)
    report([preview(context.settings, engine, destination, source) for destination in chosen for source in names],
           as_json)


@exec_.command("restore-test")
@click.argument("source_names", nargs=-1, metavar="[SOURCE]...")
@click.option("--destination", "-d", "destination_name",
              help="Destination to restore from. Default: restore_tests.destination when set, else each source "
                   "from the enabled destination it was restore-tested on longest ago (never first): every run "
                   "visits the next destination, so each is tested in turn.")
@json_option
@pass_context
@tracked
def exec_restore_test(context: Context, source_names, destination_name, as_json):
    """Restore the latest snapshot of vault, postgres, minio, files (or all) into throwaway containers
    on an isolated network, or a staging directory, and compare it with what was recorded at backup time.

    PostgreSQL: the dump is loaded into a throwaway server (restore_tests.postgres_image) and every
    table's row count and checksum compared with the backup's manifest. Vault: the snapshot's sums
    are verified and it is restored into a throwaway server; with restore_tests.vault_unseal_keys_file
    it is unsealed and a canary secret read back. MinIO: every object's size and checksum is compared
    with the manifest. Files: restic verifies every restored file against the repository, and every
    file of the snapshot's listing must be there with its size. The duration of each phase goes to
    the history (RTO planning). A difference is reported as 'restore mismatch' (exit code 1).

    Each source is tested on one destination per run: the enabled destination it was tested on
    longest ago (never first), so the monthly runs visit every destination in turn, copies included."""
    from runner.restoring import RestoreError, restore_test_destination, run_test
    from runner.sources import enabled, get

    if "all" in source_names:
        source_names = ()
    try:
        names = enabled(context.settings, source_names)
        chosen = {name: restore_test_destination(context.settings, name, destination_name) for name in names}
    except (ValueError, RestoreError) as error:
        raise click.UsageError(str(error)) from None
    engine = job_engine(context)
    runs = []
    for name in names:
        runs.append(("restore-test", run_test(context.settings, engine, name, get(name).restore_test, chosen[name])))
        record_runs(context.settings, runs[-1:])
    finish(context, runs, as_json)


@exec_.command("copy")
@click.argument("source_names", nargs=-1, metavar="[SOURCE]...")
@click.option("--from", "origin", metavar="NAME", help="Destination to copy from (with --to).")
@click.option("--to", "target", metavar="NAME", help="Destination to copy into (with --from).")
@json_option
@pass_context
@tracked
def exec_copy(context: Context, source_names, origin, target, as_json):
    """Copy snapshots between destinations with `restic copy`, so a site is filled without reading the
    sources again: every snapshot of each SOURCE's repository on --from that its repository on --to
    does not hold yet, manifests included (default: every enabled source). Without --from and --to,
    every destination with copy_from is filled from its origin (copies of copies after their origin).

    Both repositories must exist (`runner repo init --destination NAME`); both passwords are mounted
    as files. The runner's lock is held on both; the copy counts against the target's daily upload
    quota. Each (source, target) is recorded as a 'copy' run and alerted on failure. A copy gets new
    snapshot ids; restic records the original id, so manifests and restore tests find their snapshot.
    Exit code 1 if a copy failed."""
    from runner.copying import CopyError, copy, routes
    from runner.sources import enabled

    if "all" in source_names:
        source_names = ()
    try:
        chosen = routes(context.settings, origin, target)
        names = enabled(context.settings, source_names)
    except (ValueError, CopyError) as error:
        raise click.UsageError(str(error)) from None
    if not chosen:
        raise click.UsageError("no enabled destination has copy_from set: give --from NAME and --to NAME")
    if not names:
        raise click.UsageError("no source is enabled in the configuration (see [sources] in examples/runner.toml)")
    engine = job_engine(context)
    runs = []
    for route in chosen:
        for name in names:
            runs.append(("copy", copy(context.settings, engine, route, name)))
            record_runs(context.settings, runs[-1:])
    finish(context, runs, as_json)
