"""What an emulated aarch64 board runs on: qemu-user, arm64 Debian packages and aarch64 wheels.

Set up once into a cache folder (default ~/.cache/dlas/emulated-aarch64) from the package
registries, without touching the host's apt configuration or Python:
- `root/`: the arm64 .debs of python3 and libstdc++ (what the exported libraries link against),
  resolved and downloaded by apt with a private state folder, unpacked with `dpkg -x`; qemu runs
  programs with `-L root`, so no chroot and no binfmt_misc are needed.
- `site/`: aarch64 wheels of the host's own TVM, tvm-ffi, numpy, ... (same versions, so the
  RPC protocol and the runtime match what compiled the libraries), `pip install --target`.
Each part is marked complete only when it finished, so an interrupted setup resumes.
"""
from __future__ import annotations

import importlib.metadata
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from dlas.errors import DLASError

QEMU = ("qemu-aarch64-static", "qemu-aarch64")
DEBIAN_PACKAGES = ("python3.11", "libstdc++6")  # dependencies are resolved by apt
PYTHON = "usr/bin/python3.11"
WHEEL_PLATFORM = "manylinux_2_28_aarch64"  # apache-tvm's aarch64 wheel has no manylinux2014 tag
# What the board's RPC server imports, at this host's versions.
WHEELS = ("apache-tvm", "apache-tvm-ffi", "numpy", "psutil", "cloudpickle", "tornado",
          "ml_dtypes", "typing_extensions")
INSTALL = "apt-get install qemu-user-static"


def default_cache() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "dlas" / "emulated-aarch64"


@dataclass(frozen=True)
class Emulator:
    qemu: str       # the qemu-user binary
    version: str    # e.g. "qemu-aarch64 7.2.22": what rows record as their emulator
    root: Path      # unpacked arm64 packages (qemu -L)
    site: Path      # aarch64 wheels (PYTHONPATH)

    def command(self, *args: str) -> list[str]:
        """Run the aarch64 Python with args under qemu."""
        return [self.qemu, "-L", str(self.root), str(self.root / PYTHON), *args]

    def env(self) -> dict:
        return {**os.environ, "PYTHONPATH": str(self.site), "PYTHONNOUSERSITE": "1"}


def find_qemu() -> tuple[str, str]:
    """(path, version line) of qemu-user for aarch64, or one line naming the install command."""
    for name in QEMU:
        path = shutil.which(name)
        if path:
            out = subprocess.run([path, "--version"], capture_output=True, text=True).stdout
            version = out.splitlines()[0].split(" (")[0].replace(" version", "") if out else name
            return path, version
    raise DLASError("emulator", "qemu-aarch64", "qemu-user on PATH", layer="hardware",
                    reason=f"not found; install it with `{INSTALL}` (README: Boards)")


def _say(msg: str) -> None:
    print(f"[emulated] {msg}", flush=True)


def _run(cmd: list[str], what: str) -> str:
    try:
        done = subprocess.run(cmd, capture_output=True, text=True)
    except FileNotFoundError as err:
        raise DLASError("emulator setup", cmd[0], "apt-get and dpkg (Debian/Ubuntu) and pip",
                        layer="hardware", reason=f"not found, needed to {what}") from err
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        raise DLASError("emulator setup", " ".join(cmd[:2]), layer="hardware",
                        reason=f"failed to {what} (exit {done.returncode}): {' | '.join(tail)}")
    return done.stdout


def _apt_options(apt: Path) -> list[str]:
    """apt options for arm64 packages with a private state: the host's apt stays as it is."""
    for sub in ("lists/partial", "archives/partial"):
        (apt / sub).mkdir(parents=True, exist_ok=True)
    opts = {"APT::Architecture": "arm64", "APT::Architectures::": "arm64",
            "Dir::State::Lists": apt / "lists", "Dir::Cache": apt,
            "Dir::Cache::archives": apt / "archives", "Dir::State::status": os.devnull,
            "Debug::NoLocking": "1"}
    if os.geteuid() == 0:  # else apt downloads as _apt, which cannot write our folder
        opts["APT::Sandbox::User"] = "root"
    return [arg for k, v in opts.items() for arg in ("-o", f"{k}={v}")]


def _setup_root(cache: Path) -> Path:
    root = cache / "root"
    if (root / ".complete").is_file():
        return root
    apt = cache / "apt"
    opts = _apt_options(apt)
    _say("arm64 package lists (apt-get update, private state) ...")
    _run(["apt-get", *opts, "update"], "fetch the arm64 package lists")
    out = _run(["apt-cache", *opts, "depends", "--recurse", "--no-recommends", "--no-suggests",
                "--no-conflicts", "--no-breaks", "--no-replaces", "--no-enhances",
                "--no-pre-depends", *DEBIAN_PACKAGES], "resolve the arm64 packages")
    names = sorted({line for line in out.splitlines() if line and line[0] not in " <"})
    _say(f"downloading {len(names)} arm64 packages ({', '.join(DEBIAN_PACKAGES)} and their "
         "dependencies) ...")
    debs = apt / "debs"
    shutil.rmtree(debs, ignore_errors=True)
    debs.mkdir()
    _run_in(debs, ["apt-get", *opts, "download", *names], "download the arm64 packages")
    shutil.rmtree(root, ignore_errors=True)
    for deb in sorted(debs.glob("*.deb")):
        _run(["dpkg", "-x", str(deb), str(root)], f"unpack {deb.name}")
    shutil.rmtree(apt)  # 25 MB of .debs and 20 MB of lists, no longer needed
    (root / ".complete").write_text(" ".join(names) + "\n")
    return root


def _run_in(cwd: Path, cmd: list[str], what: str) -> None:
    here = Path.cwd()
    os.chdir(cwd)  # apt-get download writes into the current folder
    try:
        _run(cmd, what)
    finally:
        os.chdir(here)


def wheel_pins() -> list[str]:
    """name==version of each wheel the board needs, at this host's installed versions."""
    pins = []
    for name in WHEELS:
        try:
            pins.append(f"{name}=={importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError as err:
            raise DLASError("emulator setup", name, "installed on this host (requirements.txt)",
                            layer="hardware", reason="not installed here, so its aarch64 "
                            "version cannot be matched") from err
    return pins


def _setup_site(cache: Path) -> Path:
    site = cache / "site"
    pins = wheel_pins()
    marker = site / ".complete"
    if marker.is_file() and marker.read_text().split() == pins:
        return site
    _say(f"aarch64 wheels: {' '.join(pins)} (pip, ~400 MB unpacked) ...")
    shutil.rmtree(site, ignore_errors=True)
    _run([sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check",
          "--no-deps", "--target", str(site), "--platform", WHEEL_PLATFORM, "--only-binary=:all:",
          "--python-version", "3.11", "--implementation", "cp", "--abi", "cp311", *pins],
         "install the aarch64 wheels")
    marker.write_text("\n".join(pins) + "\n")
    return site


def setup(cache: Path | None = None) -> Emulator:
    """The emulator, its arm64 root and aarch64 wheels; downloads what the cache lacks."""
    qemu, version = find_qemu()
    cache = Path(cache) if cache else default_cache()
    cache.mkdir(parents=True, exist_ok=True)
    root = _setup_root(cache)
    site = _setup_site(cache)
    return Emulator(qemu, version, root, site)
