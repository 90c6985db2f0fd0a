"""The NAS stand-in (images/testbed/nas) under testcontainers, and an SSH identity for it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from testcontainers.core.container import DockerContainer
from testcontainers.core.wait_strategies import LogMessageWaitStrategy

from runner import images
from runner.settings import NasDestination, Settings
from tests.integration.conftest import private_file, run_tools


@dataclass(frozen=True)
class Identity:
    private_key: Path
    public_key: str


def make_identity(directory: Path, settings: Settings, name: str = "id_ed25519") -> Identity:
    directory.mkdir(parents=True, exist_ok=True)
    run_tools(settings, "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "runner-test", "-f", f"/out/{name}",
              mounts=(f"{directory}:/out",))
    key = directory / name
    public = (directory / f"{name}.pub").read_text().strip()
    private_file(key, key.read_text(), settings)
    return Identity(key, public)


class NasContainer(DockerContainer):
    def __init__(self, settings: Settings, identity: Identity):
        images.build(settings, ["testbed-nas"])
        super().__init__(images.testbed_tag("nas"))
        self.with_env("AUTHORIZED_KEYS", identity.public_key)
        self.waiting_for(LogMessageWaitStrategy("Server listening"))

    @property
    def address(self) -> str:
        wrapped = self.get_wrapped_container()
        wrapped.reload()
        return wrapped.attrs["NetworkSettings"]["IPAddress"]

    def host_key(self) -> str:
        return self.exec("cat /etc/ssh/ssh_host_ed25519_key.pub").output.decode().split()[:2]

    def known_hosts_line(self) -> str:
        kind, key = self.host_key()
        return f"{self.address} {kind} {key}\n"

    def files(self, path: str = "/backups") -> list[str]:
        return sorted(self.exec(f"find {path}").output.decode().split())

    def destination(self, identity: Identity, known_hosts: Path, **overrides) -> NasDestination:
        options = {"connect_timeout": 3, "bandwidth_limit": 0, **overrides}
        return NasDestination(kind="nas", host=self.address, private_key_file=identity.private_key,
                              known_hosts_file=known_hosts, **options)
