"""A Debian 13 machine with systemd as PID 1 and Podman 5, in a privileged container
(images/testbed/systemd), for proving the units and the Ansible role under real systemd.

Its Podman sees the host's images through a read-only additional image store, so nothing is copied.
On a host with cgroups v1/hybrid (these machines) the host's cgroup tree is shared with it and its
Podman uses the cgroupfs manager; that is what made nested containers start here.

Rootless Podman (the `backup` user's) needs what a Debian 13 server has and this container lacks, so
the setup gives it: image storage on a real file system (overlay cannot be stacked on the container's
own overlay root), /dev/net/tun usable by users (0666, as udev makes it), a default network whose
subnet is not the one this container itself sits on (10.88.0.0/16, the outer Podman's), and a reached
network-online.target (Quadlet's user units wait for it). On cgroups v1, where users get no cgroup
delegation, a drop-in for every user Quadlet unit replaces Quadlet's `--cgroups=split` (which needs
one) by Podman's default; a server with cgroups v2 needs none of this.
"""

from __future__ import annotations

import secrets
import shutil
import subprocess
import time
from pathlib import Path

from runner import images
from runner.settings import Settings

NESTED_SETUP = """
cat > /etc/containers/storage.conf <<'EOT'
[storage]
driver = "overlay"
graphroot = "/var/lib/containers/storage"
runroot = "/run/containers/storage"
rootless_storage_path = "/var/lib/rootless-storage/$USER"
[storage.options]
additionalimagestores = ["/var/lib/host-storage"]
EOT
chmod 1777 /var/lib/rootless-storage
chmod 0666 /dev/net/tun
mkdir -p /etc/containers/containers.conf.d
cat > /etc/containers/containers.conf.d/50-nested.conf <<'EOT'
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=4096:4096"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
[network]
default_subnet = "10.90.0.0/16"
EOT
if [ "$(stat -fc %T /sys/fs/cgroup)" != cgroup2fs ]; then
    mkdir -p /etc/containers/systemd/users/container.d
    printf '[Container]\\nPodmanArgs=--cgroups=enabled\\n' \\
        > /etc/containers/systemd/users/container.d/50-cgroups-v1.conf
fi
mkdir -p /etc/systemd/system.conf.d /etc/systemd/user.conf.d
printf '[Manager]\\nDefaultEnvironment=PODMAN_IGNORE_CGROUPSV1_WARNING=1\\n' > /etc/systemd/system.conf.d/podman.conf
cp /etc/systemd/system.conf.d/podman.conf /etc/systemd/user.conf.d/podman.conf
systemctl daemon-reexec
systemctl start network-online.target
systemctl enable --now podman.socket
"""


class SystemdHost:
    def __init__(self, settings: Settings, workdir: Path, volumes: dict[str, str] | None = None):
        images.build(settings, ["testbed-systemd"])
        self.name = f"offsite-test-systemd-{secrets.token_hex(3)}"
        self.storage = workdir / "nested-storage"
        self.storage.mkdir(parents=True)
        self.rootless_storage = workdir / "rootless-storage"
        self.rootless_storage.mkdir()
        host_store = subprocess.run(["podman", "info", "--format", "{{.Store.GraphRoot}}"], capture_output=True,
                                    text=True, check=True).stdout.strip()
        mounts = {host_store: "/var/lib/host-storage:ro", str(self.storage): "/var/lib/containers/storage",
                  str(self.rootless_storage): "/var/lib/rootless-storage",
                  # read-only: the machine's systemd would otherwise add directories to the host's cgroup tmpfs
                  "/sys/fs/cgroup": "/sys/fs/cgroup:ro", **(volumes or {})}
        volume_args = [arg for source, target in mounts.items() for arg in ("-v", f"{source}:{target}")]
        subprocess.run(["podman", "run", "-d", "--privileged", "--systemd=always", "--cgroupns=host", "--name",
                        self.name, *volume_args, images.testbed_tag("systemd")], check=True, capture_output=True)
        self.wait_for_boot()
        self.sh(NESTED_SETUP)

    def wait_for_boot(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = self.sh("systemctl is-system-running", check=False).stdout.strip()
            if state in ("running", "degraded"):
                return
            time.sleep(0.5)
        raise TimeoutError(f"systemd in {self.name} did not finish booting")

    def sh(self, script: str, check: bool = True, timeout: float = 900,
           input: str | None = None) -> subprocess.CompletedProcess:
        """Run a bash script as root; `input` is its standard input (none: an empty one)."""
        interactive = ["-i"] if input is not None else []
        result = subprocess.run(["podman", "exec", *interactive, "-e", "PODMAN_IGNORE_CGROUPSV1_WARNING=1", self.name,
                                 "bash", "-c", script], capture_output=True, text=True, timeout=timeout, input=input)
        if check and result.returncode != 0:
            raise AssertionError(f"in {self.name}: {script[:200]}\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}")
        return result

    def write(self, path: str, content: str, mode: str = "0644", owner: str = "root:root") -> None:
        subprocess.run(["podman", "exec", "-i", self.name, "bash", "-c",
                        f"install -D -m {mode} -o {owner.split(':')[0]} -g {owner.split(':')[1]} /dev/stdin {path}"],
                       input=content, text=True, check=True, capture_output=True)

    def remove(self) -> None:
        subprocess.run(["podman", "rm", "-f", "-t", "5", self.name], capture_output=True)
        for storage in (self.storage, self.rootless_storage):  # image copies and containers: gigabytes
            shutil.rmtree(storage, ignore_errors=True)
