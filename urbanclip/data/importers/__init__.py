"""Importers: real data formats -> a workspace (always through `WorkspaceBuilder`).

* `release.import_release`  - the UrbanCLIP dataset release (indicators CSV, captions JSON, Baidu tiles)
* `geotiff.import_geotiff`  - an RGB GeoTIFF mosaic (+ indicator rasters) cut into N-metre cells
* `xyz.import_xyz`          - tiles from an XYZ provider (Esri World Imagery by default), stitched and cut

Each returns `(Workspace, ImportReport)`. The report lists what was imported,
and every item that was skipped or kept-but-flagged with the reason, so a partial
import is never silent.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


@dataclass
class ImportReport:
    """What an import did: counts, plus (item, reason) for everything skipped or flagged."""

    source: str
    cells: int = 0
    images: int = 0
    texts: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)  # not in the workspace
    flagged: list[tuple[str, str]] = field(default_factory=list)  # in the workspace, incomplete
    notes: list[str] = field(default_factory=list)

    def skip(self, item: str, reason: str) -> None:
        self.skipped.append((item, reason))

    def flag(self, item: str, reason: str) -> None:
        self.flagged.append((item, reason))

    def summary(self, examples: int = 3) -> str:
        """Human-readable summary; reasons are grouped with counts and a few example items."""
        lines = [f"imported from {self.source}: {self.cells} cells, {self.images} images, {self.texts} descriptions"]
        lines += [f"note: {n}" for n in self.notes]
        for title, items in (("skipped", self.skipped), ("flagged (kept)", self.flagged)):
            if not items:
                continue
            lines.append(f"{title}: {len(items)}")
            by_reason = Counter(r for _, r in items)
            for reason, n in by_reason.most_common():
                ex = [i for i, r in items if r == reason][:examples]
                lines.append(f"  {n} x {reason}  (e.g. {', '.join(ex)})")
        return "\n".join(lines)


__all__ = ["ImportReport"]
