"""Where a SWORD module is: a --sword-path folder, an installed package, or a fetched Debian package.

Search order: --sword-path alone when given; else /usr/share/sword, ~/.sword and $SWORD_PATH; else the
package is fetched with `apt-get download` and unpacked with `dpkg -x` into a cache. Fetching needs no
root (only the retry after `apt-get update` does) and is done once: later runs find the unpacked package
and its recorded version in the cache. A failure says which packages to install.
"""

from __future__ import annotations

import logging
import os
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from janusgen.data.bible.texts import SwordText
from janusgen.errors import JanusError
from janusgen.fileio import atomic_directory, read_json, sha256_file, write_json

log = logging.getLogger(__name__)

DEFAULT_CACHE = Path.home() / ".cache" / "janusgen" / "sword"


@dataclass(frozen=True)
class _Location:
    library: Path  # a SWORD library folder (with mods.d/)
    package_version: str | None


def _library_modules(library: Path) -> set[str]:
    """Module names a SWORD library folder holds (empty when it has no mods.d/)."""
    from pysword.modules import SwordModules

    if not (library / "mods.d").is_dir():
        return set()
    return set(SwordModules(str(library)).parse_modules())


def _system_libraries() -> list[tuple[Path, bool]]:
    """(SWORD library, managed by dpkg?) in search order."""
    found = [(Path("/usr/share/sword"), True), (Path.home() / ".sword", False)]
    if os.environ.get("SWORD_PATH"):
        found.append((Path(os.environ["SWORD_PATH"]), False))
    return found


def locate_modules(
    texts: Sequence[SwordText], sword_path: str | None = None, cache_dir: Path | None = None
) -> dict[str, _Location]:
    """Find each text's SWORD module: in `sword_path` if given; else installed; else fetched into a cache.

    Fetching runs `apt-get download` and `dpkg -x` into `cache_dir` (default ~/.cache/janusgen/sword),
    needs no root, and is reused by later runs.
    """
    if sword_path is not None:
        library = Path(sword_path).expanduser()
        held = _library_modules(library)
        missing = [t for t in texts if t.module not in held]
        if missing:
            names = ", ".join(f"{t.module} ({t.package})" for t in missing)
            has = ", ".join(sorted(held)) or "nothing (no mods.d/)"
            raise JanusError(f"--sword-path {library}: no SWORD module {names}; it holds {has}")
        return {t.key: _Location(library, None) for t in texts}

    found: dict[str, _Location] = {}
    for text in texts:
        for library, by_dpkg in _system_libraries():
            if text.module in _library_modules(library):
                found[text.key] = _Location(library, _installed_version(text.package) if by_dpkg else None)
                break
    missing = [t for t in texts if t.key not in found]
    if missing:
        cache = Path(cache_dir).expanduser() if cache_dir is not None else DEFAULT_CACHE
        found.update(_from_cache(missing, cache))
    return found


def _installed_version(package: str) -> str | None:
    try:
        done = subprocess.run(
            ["dpkg-query", "-W", "-f=${Version}", package], capture_output=True, text=True, check=False
        )
    except FileNotFoundError:
        return None
    if done.returncode != 0:
        return None
    return done.stdout.strip() or None


def _from_cache(texts: Sequence[SwordText], cache: Path) -> dict[str, _Location]:
    """Locations of unpacked packages under `cache`, fetching the ones not there yet."""
    to_fetch = [t for t in texts if not (cache / t.package / "package.json").is_file()]
    if to_fetch:
        _fetch_packages(to_fetch, cache)
    found = {}
    for text in texts:
        root = cache / text.package
        info = read_json(root / "package.json")
        library = root / "usr" / "share" / "sword"
        if text.module not in _library_modules(library):
            raise JanusError(
                f"{root}: package {text.package} has no SWORD module {text.module}; delete that folder "
                "to fetch it again"
            )
        found[text.key] = _Location(library, info["version"])
    return found


def _fetch_packages(texts: Sequence[SwordText], cache: Path) -> None:
    """`apt-get download` the packages and unpack each, atomically, into cache/<package>/."""
    packages = [t.package for t in texts]
    with tempfile.TemporaryDirectory(prefix="janusgen-sword-") as tmp:
        try:
            _run(["apt-get", "download", *packages], cwd=Path(tmp), texts=texts)
        except JanusError:
            # a fresh machine often has no package lists yet; as root, refresh them once and retry
            if not (hasattr(os, "geteuid") and os.geteuid() == 0):
                raise
            log.info("janus: apt-get download failed; running `apt-get update` and trying again")
            _run(["apt-get", "update", "-qq"], cwd=Path(tmp), texts=texts)
            _run(["apt-get", "download", *packages], cwd=Path(tmp), texts=texts)
        for package in packages:
            debs = sorted(Path(tmp).glob(f"{package}_*.deb"))
            if len(debs) != 1:
                raise JanusError(f"apt-get download {package} left {len(debs)} .deb files in {tmp}")
            deb = debs[0]
            version = _run(["dpkg-deb", "-f", str(deb), "Version"], cwd=Path(tmp), texts=texts).strip()
            with atomic_directory(cache / package) as unpacked:
                _run(["dpkg", "-x", str(deb), str(unpacked)], cwd=Path(tmp), texts=texts)
                write_json(
                    unpacked / "package.json",
                    {"package": package, "version": version, "deb": deb.name, "sha256": sha256_file(deb)},
                )


def _run(cmd: list[str], cwd: Path, texts: Sequence[SwordText]) -> str:
    """Run a packaging command; on failure, say what to install instead."""
    try:
        done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=False)
    except FileNotFoundError:
        reason = f"{cmd[0]} is not available"
    else:
        if done.returncode == 0:
            return done.stdout
        lines = (done.stderr or done.stdout).strip().splitlines()
        reason = f"`{' '.join(cmd)}` failed: {lines[-1] if lines else f'exit status {done.returncode}'}"
    modules = ", ".join(t.module for t in texts)
    packages = " ".join(t.package for t in texts)
    raise JanusError(
        f"SWORD module(s) {modules} not found in /usr/share/sword, ~/.sword or $SWORD_PATH, and fetching "
        f"them failed ({reason}). Install them with `apt-get update && apt-get install {packages}`, or pass "
        "--sword-path "
        "DIR (a SWORD library folder with mods.d/)"
    )
