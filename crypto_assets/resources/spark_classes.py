"""A class-data-sharing archive of the classes Spark's driver JVM loads at start.

Every run starts its own JVM, and on a small machine loading and verifying Spark's classes is most
of the start: an archive of them, mapped instead of loaded, takes a local session's start and first
query from about 10 s to 6 (``python -m benchmarks.spark_start``). ``make setup`` (and the image)
makes it with ``python -m crypto_assets.resources.spark_classes``; without it runs just start slower.

An archive belongs to one JVM build and one set of Spark jars, and a damaged one crashes the JVM
rather than being ignored. So it is written under a temporary name, tried once with sharing
required, and only then renamed into place beside a stamp of what it was made for
(``ArchiveStamp``); a session uses it only while the stamp still matches.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional

import pyspark

from crypto_assets.process_groups import wait_until_gone

MODULE = "crypto_assets.resources.spark_classes"
MAKE = f"`make setup` or `python -m {MODULE}` makes one"
# Beside the Python environment that has this pyspark: a venv's own, or the image's.
ARCHIVE_DIR = Path(sys.prefix) / "share" / "crypto_assets"


@dataclass(frozen=True)
class ArchiveStamp:
    """What an archive was made for: the java that pyspark runs, Spark's jars, and the file itself."""

    java: str
    java_size: int
    java_mtime_ns: int
    jars_mtime_ns: int
    archive_size: int


def archive_path(folder: Path = ARCHIVE_DIR) -> Path:
    return folder / f"spark-{pyspark.__version__}-classes.jsa"


def _java() -> Path:
    """The JVM binary pyspark launches (spark-class: ``$JAVA_HOME/bin/java``, else ``java`` on PATH)."""
    java_home = os.environ.get("JAVA_HOME")
    found = str(Path(java_home) / "bin" / "java") if java_home else shutil.which("java")
    if not found or not Path(found).exists():
        raise RuntimeError("no Java found (JAVA_HOME or java on PATH): Spark needs Java 17 or later")
    return Path(found).resolve()


def _stamp(archive: Path) -> ArchiveStamp:
    java = _java()
    libjvm = java.parents[1] / "lib" / "server" / "libjvm.so"  # the JVM build itself
    built = (libjvm if libjvm.exists() else java).stat()
    return ArchiveStamp(
        java=str(java),
        java_size=built.st_size,
        java_mtime_ns=built.st_mtime_ns,
        jars_mtime_ns=(Path(pyspark.__file__).parent / "jars").stat().st_mtime_ns,
        archive_size=archive.stat().st_size,
    )


def _stamp_file(archive: Path) -> Path:
    return archive.with_suffix(".json")


def usable_archive(folder: Path = ARCHIVE_DIR) -> Optional[Path]:
    """The archive, if one was made for this java and these jars and is whole; else None."""
    archive = archive_path(folder)
    try:
        recorded = ArchiveStamp(**json.loads(_stamp_file(archive).read_text()))
        return archive if recorded == _stamp(archive) else None
    except (OSError, ValueError, TypeError, RuntimeError):
        return None


def java_options(archive: Path) -> str:
    """The driver JVM options that map ``archive`` (-Xshare:auto: a JVM that cannot map it starts without)."""
    return f"-XX:SharedArchiveFile={archive} -Xshare:auto"


def _exercise(options: str) -> None:
    """Start a session as a run does, with ``options`` for its JVM, and run a run's first queries once."""
    from crypto_assets.resources.spark import SparkResource
    from crypto_assets.warm_up import warm_up

    resource = SparkResource(master="local[1]", class_archive=False, java_options=options)
    warm_up(resource.spark_session)
    resource.spark_session.stop()


def _run_to_the_end(command: list[str], timeout: float = 600) -> None:
    """Run ``command`` in its own process group and wait until every process of it has exited: the
    JVM outlives the Python that started it by the time it takes to write the archive."""
    process = subprocess.Popen(command, start_new_session=True)
    if process.wait(timeout=timeout) != 0:
        raise RuntimeError(f"making Spark's class archive failed: {' '.join(command)} exited {process.returncode}")
    if not wait_until_gone(process.pid, timeout):
        raise RuntimeError(f"making Spark's class archive: the JVM of {' '.join(command)} did not exit")


def build(folder: Path = ARCHIVE_DIR) -> Path:
    """Make the archive unless a usable one exists; returns its path. Raises if it cannot be made."""
    archive = archive_path(folder)
    if usable_archive(folder):
        return archive
    folder.mkdir(parents=True, exist_ok=True)
    draft = archive.with_name(f"{archive.name}.{os.getpid()}.draft")
    try:
        # the JVM writes the archive as it exits, so each step is its own process group
        for options in (f"-XX:ArchiveClassesAtExit={draft}", f"{java_options(draft)} -Xshare:on"):
            _run_to_the_end([sys.executable, "-m", MODULE, "--exercise", options])
        stamp = _stamp(draft)
        os.replace(draft, archive)
        _stamp_file(archive).write_text(json.dumps(asdict(stamp)))
    finally:
        draft.unlink(missing_ok=True)
    return archive


def main(argv: list[str]) -> int:
    if argv[:1] == ["--exercise"]:
        _exercise(argv[1])
        return 0
    present = usable_archive()
    archive = build()
    size = archive.stat().st_size / 1e6
    print(f"Spark class archive {'up to date' if present else 'made'}: {archive} ({size:.0f} MB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
