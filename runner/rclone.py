"""rclone remotes as data: the Google Drive remote rendered from the settings, written as rclone.conf.

The rendered file holds no secret: it names the service-account file by its path inside the job
container, where that file is mounted read-only.
"""

from __future__ import annotations

from collections.abc import Mapping

from runner.settings import GDriveDestination


def drive_remote(config: GDriveDestination, service_account_path: str) -> dict[str, str]:
    remote = {
        "type": "drive",
        "scope": "drive",
        "service_account_file": service_account_path,
        "chunk_size": config.chunk_size,
        "stop_on_upload_limit": "true",  # Drive's ~750 GB/day cap: fail fast instead of retrying all day
    }
    if config.team_drive:
        remote["team_drive"] = config.team_drive
    if config.impersonate:
        remote["impersonate"] = config.impersonate
    return remote


def render_config(remotes: Mapping[str, Mapping[str, str]]) -> str:
    lines = []
    for name, options in remotes.items():
        lines.append(f"[{name}]")
        for key, value in options.items():
            if "\n" in value:
                raise ValueError(f"rclone option {key} of remote {name} contains a line break")
            lines.append(f"{key} = {value}")
        lines.append("")
    return "\n".join(lines)
