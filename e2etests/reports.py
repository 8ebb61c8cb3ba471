"""Writing the run's reports to files, atomically.

Atomic because readers poll these files: node-exporter's textfile collector scrapes ``*.prom``
at any moment and upgrade tooling may read the JSON while a new run is writing it.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from pathlib import Path

from e2etests import junit, prometheus, summary, summary_json
from e2etests.redact import redact_tree
from e2etests.results import RunResult

DEFAULT_REPORT_DIR = Path("reports")


def atomic_write(path: Path, text: str, *, mode: int = 0o644) -> Path:
    """Write ``text`` to ``path`` so that readers see the old file or the new one, never half.

    The temporary file lives in the same directory so ``os.replace`` stays a rename.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        # mkstemp creates 0600; the textfile collector usually runs as another user.
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


@dataclasses.dataclass(frozen=True)
class ReportPaths:
    """Where each report goes; ``None`` leaves that report out."""

    json: Path | None = None
    prom: Path | None = None
    text: Path | None = None
    #: only where pytest writes none (a merged run); pytest's own is richer
    junit: Path | None = None

    @classmethod
    def in_dir(
        cls,
        report_dir: Path,
        *,
        json: Path | None = None,
        prom: Path | None = None,
        junit: Path | None = None,
    ) -> ReportPaths:
        """Defaults inside ``report_dir``; explicit paths win."""
        return cls(
            json=json or report_dir / "summary.json",
            prom=prom or report_dir / "e2etests.prom",
            text=report_dir / "summary.txt",
            junit=junit,
        )

    def all(self) -> list[Path]:
        return [p for p in (self.json, self.prom, self.text, self.junit) if p is not None]


def write_reports(run: RunResult, paths: ReportPaths) -> list[Path]:
    """Render and write every requested report; returns the paths written.

    Every string of ``run`` is redacted first, whoever built it: reports outlive the run and
    are read by more people than the operator.
    """
    run = redact_tree(run)
    written: list[Path] = []
    if paths.json is not None:
        written.append(atomic_write(paths.json, summary_json.render_json(run)))
    if paths.prom is not None:
        written.append(atomic_write(paths.prom, prometheus.render_prometheus(run)))
    if paths.text is not None:
        written.append(atomic_write(paths.text, summary.render_text(run)))
    if paths.junit is not None:
        written.append(atomic_write(paths.junit, junit.render_junit(run)))
    return written
