"""Download the public LINCS L1000 releases: resumable, verified, recorded.

:func:`fetch_release` downloads the files of one release (:data:`RELEASES`: ``GSE92742``,
``GSE70138``, ``LINCS2020``) into a folder, flat (each file under its own name), and
:func:`plan_fetch` says what it would download and how much disk that needs, without downloading.

* **Which files.** By default those a reference store needs: the Level 5 matrix and the
  signature, signature-metrics, gene, perturbagen/compound and cell tables; ``levels=(3,)`` /
  ``(4,)`` add the Level 3 / Level 4 matrices and the instance table; ``extra=`` adds any other
  catalogue entry by name or role (e.g. LINCS 2020's control signatures ``level5_ctl``).
* **Where from.** The official hosts, at the relative paths below; ``mirror=BASE_URL`` serves
  the same relative paths (lab mirrors, tests).
* **Resumable.** Each file is written to ``<name>.part`` and renamed when verified. An
  interrupted download (dropped connection, Ctrl-C, crash) keeps the ``.part`` and the next call
  resumes it with an HTTP range request; a dropped connection is also retried at once
  (``retries``). Servers without range support are handled by starting that file again from zero
  (said in a log line and in the result's notes).
* **Verified.** GEO publishes ``<series>_SHA512SUMS.txt.gz`` in each series' ``suppl/`` folder: it
  is fetched first and every file it lists is checked against its SHA-512 (computed while
  downloading). LINCS 2020 publishes no checksum file on its bucket: files are checked against the
  size the server announces (Content-Length / Content-Range). A mismatch raises
  :class:`~opencmap.errors.ChecksumError` naming the file; the ``.part`` is removed.
* **Recorded, never twice.** ``opencmap-fetch.json`` in the folder lists every verified file (url,
  size, SHA-512, how it was verified, when). A file listed there with the same size and
  modification time is not downloaded or hashed again.
* **Decompressed on the way.** GEO ships its matrices as ``.gctx.gz``, which HDF5 cannot read in
  place. With ``decompress=True`` (default) a ``.gctx.gz`` downloaded from its first byte is also
  decompressed as it arrives (ISA-L, in a worker thread) into the ``.gctx`` next to it, the copy
  :mod:`opencmap.io.decompress` would otherwise make on first read: the decompression overlaps
  the network transfer instead of delaying the first ``store build``. A resumed download (whose
  beginning is not in the stream) is decompressed after it completes.
* **Disk.** Before anything is downloaded, the bytes still to fetch (plus, with ``decompress``,
  the decompressed copies where their size is known) are compared with the free space
  (:class:`~opencmap.errors.DiskSpaceError`, nothing written).

Sources of the catalogue (file names, relative paths, sizes; found with the project's code search,
read for the names only):

* GSE92742: djhshih/analysis-cmap ``phase1/get.sh`` (wget of every default file and
  ``GSE92742_SHA512SUMS.txt.gz`` from ``geo/series/GSE92nnn/GSE92742/suppl/``);
  Lauffenburger-Lab/DrugsANNSignaling ``data/README.md`` (Level 3 and Level 5 names); an R
  ``loadCMap`` helper and several scripts for the Level 4 name
  ``GSE92742_Broad_LINCS_Level4_ZSPCINF_mlr12k_n1319138x12328.gctx.gz``; the Level 5 size
  (21,328,033,748 bytes; 23,380,287,022 decompressed) from a data provenance note that verified it
  against the SHA512SUMS file.
* GSE70138: scripts that download ``GSE70138_SHA512SUMS.txt.gz`` and the dated 2017-03-06 files
  (``cell_info`` dated 2017-04-28) from ``geo/series/GSE70nnn/GSE70138/suppl/`` and parse the sums
  as ``<sha512> <name>`` lines; sizes of every default file from the same provenance note (Level
  5: 5,365,179,698 bytes, 5,824,120,558 decompressed; the series also holds an undated, older
  ``pert_info.txt.gz`` not listed in SHA512SUMS, which is not used); Level 3/4 names
  (``..._Level3_INF_mlr12k_n345976x12328_2017-03-06.gctx.gz``, ``..._Level4_ZSPCINF_...``) from a
  dataset README and an R download script.
* LINCS2020: scripts with the bucket URLs ``s3.amazonaws.com/macchiato.clue.io/builds/LINCS2020/``
  + ``siginfo_beta.txt``, ``geneinfo_beta.txt``, ``compoundinfo_beta.txt``, ``cellinfo_beta.txt``,
  ``instinfo_beta.txt`` (top level), ``level5/level5_beta_trt_cp_n720216x12328.gctx``,
  ``level5/level5_beta_ctl_n58022x12328.gctx``, ``level4/level4_beta_trt_cp_n1805898x12328.gctx``,
  ``level3/level3_beta_trt_cp_n1805898x12328.gctx``, ``level3|4/level*_beta_ctl_n188708x12328.gctx``;
  sizes from a provenance note (trt_cp Level 5: 35,518,405,386 bytes = 720,216 x 12,328 x 4 + 0.4 MB
  of metadata: the beta matrices are uncompressed float32; trt_xpr 6,516,812,529) and the
  voloudakislab/antagonist README's table of the CLUE files. Other matrix sizes are estimated from
  their shapes (marked approximate); the server's Content-Length is what downloads are checked against.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from os import PathLike
from pathlib import Path
from typing import Any

from opencmap.errors import ChecksumError, ConfigError, DiskSpaceError, FetchError
from opencmap.io.atomic import atomic_write_path
from opencmap.io.decompress import StreamingGunzip, decompressed_path, gunzip_file, is_decompressed_copy
from opencmap.io.versions import check_format_version

__all__ = [
    "ReleaseFile",
    "Release",
    "RELEASES",
    "release",
    "FetchPlan",
    "PlannedFile",
    "FetchResult",
    "FetchedFile",
    "plan_fetch",
    "fetch_release",
    "select_files",
    "describe_plan",
    "MANIFEST_NAME",
    "FetchProgress",
]

log = logging.getLogger(__name__)

MANIFEST_NAME = "opencmap-fetch.json"
MANIFEST_FORMAT = "opencmap-fetch"
MANIFEST_VERSION = 1
#: Free space kept on top of the download.
DISK_MARGIN = 256 << 20
_CHUNK = 1 << 20


# --------------------------------------------------------------------------------------- catalogue
@dataclass(frozen=True)
class ReleaseFile:
    """One file of a release.

    ``path`` is relative to the release's base URL (and to a mirror's); the file is saved under
    its base name. ``size`` is the exact size in bytes where a public source states it,
    ``approx_size`` a rounded one; the server's own Content-Length is what downloads are checked
    against. ``unpacked_size``: the decompressed size of a ``.gctx.gz``, where known.
    """

    name: str
    path: str
    role: str
    default: bool = False
    level: int | None = None
    size: int | None = None
    approx_size: int | None = None
    unpacked_size: int | None = None
    note: str = ""

    @property
    def filename(self) -> str:
        return self.path.rsplit("/", 1)[-1]

    @property
    def size_hint(self) -> int | None:
        return self.size if self.size is not None else self.approx_size


@dataclass(frozen=True)
class Release:
    """A public release: where it lives, its files, and its checksum file (if it publishes one)."""

    name: str
    base_url: str
    description: str
    files: tuple[ReleaseFile, ...]
    checksums: str | None = None
    """Relative path of the published checksum file (``sha512  name`` lines, gzip), or None."""

    def file(self, key: str) -> ReleaseFile:
        """A file by its catalogue name, role or file name."""
        for f in self.files:
            if key in (f.name, f.filename):
                return f
        matches = [f for f in self.files if f.role == key]
        if len(matches) == 1:
            return matches[0]
        known = ", ".join(f.name for f in self.files)
        raise ConfigError(f"{self.name} has no file {key!r}; its catalogue holds: {known}")


_GB = 1_000_000_000
_MB = 1_000_000


def _matrix_bytes(n_columns: int, n_genes: int = 12328) -> int:
    """Approximate size of an uncompressed float32 GCTX (the matrix; metadata is small beside it)."""
    return n_columns * n_genes * 4


#: Compressed / plain size of GEO's Level 5 ``.gctx.gz`` (GSE92742 0.912, GSE70138 0.921): float32
#: z-scores barely compress; used to estimate the unpublished sizes of the Level 3/4 files.
_GZ_RATIO = 0.92


def _geo(series: str) -> str:
    return f"https://ftp.ncbi.nlm.nih.gov/geo/series/{series[:-3]}nnn/{series}/suppl"


_GSE92742 = Release(
    name="GSE92742",
    base_url=_geo("GSE92742"),
    description="LINCS L1000 phase I (GEO GSE92742): 473,647 Level 5 signatures x 12,328 genes",
    checksums="GSE92742_SHA512SUMS.txt.gz",
    files=(
        ReleaseFile("checksums", "GSE92742_SHA512SUMS.txt.gz", "checksums", default=True),
        ReleaseFile("level5", "GSE92742_Broad_LINCS_Level5_COMPZ.MODZ_n473647x12328.gctx.gz", "level5_matrix", default=True,
                    level=5, size=21_328_033_748, unpacked_size=23_380_287_022),
        ReleaseFile("sig_info", "GSE92742_Broad_LINCS_sig_info.txt.gz", "sig_info", default=True),
        ReleaseFile("sig_metrics", "GSE92742_Broad_LINCS_sig_metrics.txt.gz", "sig_metrics", default=True),
        ReleaseFile("gene_info", "GSE92742_Broad_LINCS_gene_info.txt.gz", "gene_info", default=True),
        ReleaseFile("pert_info", "GSE92742_Broad_LINCS_pert_info.txt.gz", "pert_info", default=True),
        ReleaseFile("cell_info", "GSE92742_Broad_LINCS_cell_info.txt.gz", "cell_info", default=True),
        ReleaseFile("inst_info", "GSE92742_Broad_LINCS_inst_info.txt.gz", "inst_info", level=3),
        ReleaseFile("level3", "GSE92742_Broad_LINCS_Level3_INF_mlr12k_n1319138x12328.gctx.gz", "level3_matrix", level=3,
                    approx_size=int(_GZ_RATIO * _matrix_bytes(1_319_138)), unpacked_size=_matrix_bytes(1_319_138)),
        ReleaseFile("level4", "GSE92742_Broad_LINCS_Level4_ZSPCINF_mlr12k_n1319138x12328.gctx.gz", "level4_matrix", level=4,
                    approx_size=int(_GZ_RATIO * _matrix_bytes(1_319_138)), unpacked_size=_matrix_bytes(1_319_138)),
        ReleaseFile("pert_metrics", "GSE92742_Broad_LINCS_pert_metrics.txt.gz", "pert_metrics"),
        ReleaseFile("gene_info_delta_landmark", "GSE92742_Broad_LINCS_gene_info_delta_landmark.txt.gz", "gene_info_delta"),
    ),
)

_GSE70138 = Release(
    name="GSE70138",
    base_url=_geo("GSE70138"),
    description="LINCS L1000 phase II (GEO GSE70138, 2017-03-06): 118,050 Level 5 signatures x 12,328 genes",
    checksums="GSE70138_SHA512SUMS.txt.gz",
    files=(
        ReleaseFile("checksums", "GSE70138_SHA512SUMS.txt.gz", "checksums", default=True, size=1_071),
        ReleaseFile("level5", "GSE70138_Broad_LINCS_Level5_COMPZ_n118050x12328_2017-03-06.gctx.gz", "level5_matrix", default=True,
                    level=5, size=5_365_179_698, unpacked_size=5_824_120_558),
        ReleaseFile("sig_info", "GSE70138_Broad_LINCS_sig_info_2017-03-06.txt.gz", "sig_info", default=True, size=1_943_865),
        ReleaseFile("sig_metrics", "GSE70138_Broad_LINCS_sig_metrics_2017-03-06.txt.gz", "sig_metrics", default=True, size=3_137_083),
        ReleaseFile("gene_info", "GSE70138_Broad_LINCS_gene_info_2017-03-06.txt.gz", "gene_info", default=True, size=216_692),
        ReleaseFile("pert_info", "GSE70138_Broad_LINCS_pert_info_2017-03-06.txt.gz", "pert_info", default=True, size=82_376),
        ReleaseFile("cell_info", "GSE70138_Broad_LINCS_cell_info_2017-04-28.txt.gz", "cell_info", default=True, size=2_528),
        ReleaseFile("inst_info", "GSE70138_Broad_LINCS_inst_info_2017-03-06.txt.gz", "inst_info", level=3, size=4_783_200),
        ReleaseFile("level3", "GSE70138_Broad_LINCS_Level3_INF_mlr12k_n345976x12328_2017-03-06.gctx.gz", "level3_matrix", level=3,
                    approx_size=int(_GZ_RATIO * _matrix_bytes(345_976)), unpacked_size=_matrix_bytes(345_976)),
        ReleaseFile("level4", "GSE70138_Broad_LINCS_Level4_ZSPCINF_mlr12k_n345976x12328_2017-03-06.gctx.gz", "level4_matrix", level=4,
                    approx_size=int(_GZ_RATIO * _matrix_bytes(345_976)), unpacked_size=_matrix_bytes(345_976)),
    ),
)

_LINCS2020 = Release(
    name="LINCS2020",
    base_url="https://s3.amazonaws.com/macchiato.clue.io/builds/LINCS2020",
    description="CMap LINCS 2020 'beta' release (CLUE): 720,216 compound signatures (1,201,944 in all) x 12,328 genes",
    checksums=None,
    files=(
        ReleaseFile("level5", "level5/level5_beta_trt_cp_n720216x12328.gctx", "level5_matrix", default=True, level=5,
                    size=35_518_405_386, note="compound signatures only; controls are in level5_ctl"),
        ReleaseFile("sig_info", "siginfo_beta.txt", "sig_info", default=True, approx_size=444 * _MB,
                    note="every signature of the release, with its QC metrics (no separate sig_metrics file)"),
        ReleaseFile("gene_info", "geneinfo_beta.txt", "gene_info", default=True, approx_size=1_090_000),
        ReleaseFile("compound_info", "compoundinfo_beta.txt", "compound_info", default=True, approx_size=3 * _MB),
        ReleaseFile("cell_info", "cellinfo_beta.txt", "cell_info", default=True, approx_size=60_000),
        ReleaseFile("level5_ctl", "level5/level5_beta_ctl_n58022x12328.gctx", "level5_controls", approx_size=_matrix_bytes(58_022),
                    note="control (vehicle, untreated) signatures: null signatures for FDR"),
        ReleaseFile("level5_sh", "level5/level5_beta_trt_sh_n238351x12328.gctx", "level5_shrna", approx_size=_matrix_bytes(238_351)),
        ReleaseFile("level5_oe", "level5/level5_beta_trt_oe_n34171x12328.gctx", "level5_oe", approx_size=_matrix_bytes(34_171)),
        ReleaseFile("level5_xpr", "level5/level5_beta_trt_xpr_n142901x12328.gctx", "level5_crispr", size=6_516_812_529),
        ReleaseFile("level5_misc", "level5/level5_beta_trt_misc_n8283x12328.gctx", "level5_misc", approx_size=_matrix_bytes(8_283)),
        ReleaseFile("inst_info", "instinfo_beta.txt", "inst_info", level=3),
        ReleaseFile("level3", "level3/level3_beta_trt_cp_n1805898x12328.gctx", "level3_matrix", level=3, approx_size=_matrix_bytes(1_805_898),
                    note="compound wells only; their plates' control wells are in level3_ctl"),
        ReleaseFile("level3_ctl", "level3/level3_beta_ctl_n188708x12328.gctx", "level3_controls", level=3, approx_size=_matrix_bytes(188_708)),
        ReleaseFile("level4", "level4/level4_beta_trt_cp_n1805898x12328.gctx", "level4_matrix", level=4, approx_size=_matrix_bytes(1_805_898)),
        ReleaseFile("level4_ctl", "level4/level4_beta_ctl_n188708x12328.gctx", "level4_controls", level=4, approx_size=_matrix_bytes(188_708)),
    ),
)

#: The releases :func:`fetch_release` knows, by name.
RELEASES: dict[str, Release] = {r.name: r for r in (_GSE92742, _GSE70138, _LINCS2020)}


def release(name: str) -> Release:
    """A release by name (case-insensitive); :class:`~opencmap.errors.FetchError` for unknown names."""
    for key, rel in RELEASES.items():
        if key.lower() == str(name).strip().lower():
            return rel
    raise FetchError(f"unknown release {name!r}; known releases: {', '.join(RELEASES)}; give one of these names (case does not matter)")


def select_files(rel: Release, *, levels: Iterable[int] = (), extra: Iterable[str] = ()) -> list[ReleaseFile]:
    """The default files, those of the Level 3/4 ``levels`` asked for, and ``extra`` ones, in catalogue order."""
    levels = {int(x) for x in levels}
    bad = levels - {3, 4, 5}
    if bad:
        raise ConfigError(f"levels must be 3, 4 or 5, got {sorted(bad)}")
    wanted = {f.name for f in rel.files if f.default}
    for f in rel.files:
        if f.level is not None and f.level in levels:
            wanted.add(f.name)
        if f.role == "inst_info" and levels & {3, 4}:
            wanted.add(f.name)  # Level 3/4 columns are instances: their table comes along
    wanted |= {rel.file(key).name for key in extra}
    return [f for f in rel.files if f.name in wanted]


# ------------------------------------------------------------------------------------------ results
@dataclass
class PlannedFile:
    name: str
    url: str
    dest: Path
    size: int | None
    size_source: str
    """``server`` (Content-Length), ``catalogue``, ``approximate`` (catalogue estimate) or ``unknown``."""
    status: str
    """``verified`` (present and recorded), ``partial`` (a ``.part`` to resume) or ``missing``."""
    have_bytes: int = 0
    unpacked_size: int | None = None
    not_found: bool = False
    """The server answered 404 to a HEAD request for it."""

    @property
    def to_download(self) -> int | None:
        if self.status == "verified":
            return 0
        return None if self.size is None else max(0, self.size - self.have_bytes)


@dataclass
class FetchPlan:
    release: str
    dest: Path
    base_url: str
    files: list[PlannedFile]
    free_bytes: int
    notes: list[str] = field(default_factory=list)

    @property
    def download_bytes(self) -> int:
        return sum(f.to_download or 0 for f in self.files)

    @property
    def unknown_sizes(self) -> list[str]:
        return [f.name for f in self.files if f.to_download is None]

    @property
    def unpacked_bytes(self) -> int:
        """Disk the decompressed copies of the ``.gctx.gz`` matrices will take when read (known sizes only)."""
        return sum(f.unpacked_size or 0 for f in self.files if f.status != "verified" or not _unpacked_exists(f))

    def fits(self, *, decompress: bool = False) -> bool:
        """Whether the download (and with ``decompress`` the decompressed copies) fits on the disk."""
        return self.download_bytes + (self.unpacked_bytes if decompress else 0) + DISK_MARGIN <= self.free_bytes


def _unpacked_exists(f: PlannedFile) -> bool:
    return f.dest.name.endswith(".gz") and f.dest.with_name(f.dest.name[:-3]).exists()


@dataclass
class FetchedFile:
    name: str
    url: str
    path: Path
    size: int
    sha512: str
    verified_by: str
    """``SHA512SUMS`` (the release's checksum file) or ``size`` (the server's Content-Length)."""
    status: str
    """``downloaded``, ``resumed`` or ``skipped`` (already verified)."""


@dataclass
class FetchResult:
    release: str
    dest: Path
    manifest: Path
    files: list[FetchedFile]
    bytes_downloaded: int
    seconds: float
    notes: list[str] = field(default_factory=list)


class FetchProgress:
    """Progress observer of downloads; the default logs a line every ``every`` seconds (INFO).

    Subclass it (the CLI draws bars): :meth:`start` when a file begins (``done`` > 0 on resume),
    :meth:`advance` per chunk, :meth:`finish` when the file is complete.
    """

    def __init__(self, every: float = 10.0) -> None:
        self.every = every
        self._last = 0.0
        self._name = ""
        self._done = 0
        self._total: int | None = None

    def start(self, name: str, total: int | None, done: int) -> None:
        self._name, self._total, self._done = name, total, done
        self._last = time.perf_counter()
        log.info("downloading %s (%s)%s", name, _human(total), f", resuming at {_human(done)}" if done else "")

    def advance(self, n: int) -> None:
        self._done += n
        now = time.perf_counter()
        if now - self._last >= self.every:
            self._last = now
            pct = f"{100 * self._done / self._total:.0f}% " if self._total else ""
            log.info("downloading %s: %s(%s of %s)", self._name, pct, _human(self._done), _human(self._total))

    def finish(self) -> None:
        log.info("downloaded %s (%s)", self._name, _human(self._done))


def _human(n: int | None) -> str:
    if n is None:
        return "size unknown"
    for unit, scale in (("GB", _GB), ("MB", _MB), ("KB", 1000)):
        if n >= scale:
            return f"{n / scale:.2f} {unit}"
    return f"{n} B"


# ------------------------------------------------------------------------------------------ manifest
def _read_manifest(dest: Path) -> dict[str, Any]:
    path = dest / MANIFEST_NAME
    if not path.exists():
        return {"format": MANIFEST_FORMAT, "format_version": MANIFEST_VERSION, "files": {}}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise FetchError(f"{path}: unreadable fetch manifest ({exc}); delete it and fetch again (files are re-verified)") from exc
    check_format_version(data.get("format_version", 0), MANIFEST_VERSION, what="fetch manifest", path=path, also=FetchError)
    data.setdefault("files", {})
    return data


def _write_manifest(dest: Path, manifest: dict[str, Any]) -> None:
    with atomic_write_path(dest / MANIFEST_NAME) as tmp:
        tmp.write_text(json.dumps(manifest, indent=1) + "\n")


def _recorded(manifest: dict[str, Any], path: Path) -> dict[str, Any] | None:
    """The manifest entry of ``path`` if the file on disk is still the one verified (size and mtime)."""
    entry = manifest["files"].get(path.name)
    if entry is None or not path.exists():
        return None
    st = path.stat()
    if st.st_size != entry.get("size") or st.st_mtime_ns != entry.get("mtime_ns"):
        return None
    return entry


# ------------------------------------------------------------------------------------------ HTTP
def _client(timeout: float) -> Any:
    import httpx

    return httpx.Client(follow_redirects=True, timeout=httpx.Timeout(timeout), headers={"Accept-Encoding": "identity"})


def _url(base: str, rel_path: str) -> str:
    return base.rstrip("/") + "/" + rel_path.lstrip("/")


def _head(client: Any, url: str) -> tuple[int | None, int | None]:
    """``(size, HTTP status)`` of ``url`` from a HEAD request; ``(None, None)`` when the server does not answer."""
    import httpx

    try:
        response = client.head(url)
    except httpx.HTTPError as exc:
        log.debug("HEAD %s failed: %s", url, exc)
        return None, None
    if response.status_code != 200:
        return None, response.status_code
    length = response.headers.get("Content-Length")
    return (int(length) if length is not None and length.isdigit() else None), 200


def _base_for(rel: Release, mirror: str | None) -> str:
    if mirror is None:
        return rel.base_url
    if not str(mirror).startswith(("http://", "https://")):
        raise ConfigError(f"--mirror must be an http(s) URL serving the release's relative paths, got {mirror!r}")
    return str(mirror)


def plan_fetch(
    name: str,
    dest: str | PathLike[str],
    *,
    levels: Iterable[int] = (),
    extra: Iterable[str] = (),
    mirror: str | None = None,
    ask_server: bool = True,
    timeout: float = 30.0,
    _http: Any = None,
) -> FetchPlan:
    """What :func:`fetch_release` would download into ``dest``: files, sizes, bytes still to fetch, free disk.

    Sizes come from the server (HEAD) when ``ask_server`` and it answers, else from the catalogue.
    Nothing is written.
    """
    rel = release(name)
    out = Path(dest)
    base = _base_for(rel, mirror)
    chosen = select_files(rel, levels=levels, extra=extra)
    manifest = _read_manifest(out) if out.is_dir() else {"files": {}}
    notes: list[str] = []
    client = (_http or _client(timeout)) if ask_server else None
    planned: list[PlannedFile] = []
    server_answers = client is not None
    try:
        for f in chosen:
            url = _url(base, f.path)
            target = out / f.filename
            size, source, status_code = None, "unknown", None
            if server_answers and _recorded(manifest, target) is None:
                size, status_code = _head(client, url)
                source = "server" if size is not None else source
                server_answers = status_code is not None  # unreachable: ask no more (each would wait the timeout)
            if size is None and f.size is not None:
                size, source = f.size, "catalogue"
            elif size is None and f.approx_size is not None:
                size, source = f.approx_size, "approximate"
            part = target.with_name(target.name + ".part")
            if _recorded(manifest, target) is not None:
                status, have = "verified", target.stat().st_size
                size = target.stat().st_size
            elif part.exists():
                status, have = "partial", part.stat().st_size
            else:
                status, have = "missing", 0
            planned.append(PlannedFile(f.name, url, target, size, source, status, have, f.unpacked_size, status_code == 404))
    finally:
        if client is not None and _http is None:
            client.close()
    if ask_server and not server_answers:
        notes.append(f"the server at {base} did not answer HEAD requests; sizes are the catalogue's")
    folder = out if out.exists() else next((p for p in out.parents if p.exists()), Path("."))
    free = shutil.disk_usage(folder).free
    return FetchPlan(rel.name, out, base, planned, free, notes)


def _parse_sha512sums(path: Path) -> dict[str, str]:
    """``name -> sha512`` from a (gzip) ``sha512sum`` listing: ``<hex>  <name>`` or ``<hex> *<name>``."""
    opener = gzip.open if path.read_bytes()[:2] == b"\x1f\x8b" else open
    sums: dict[str, str] = {}
    try:
        with opener(path, "rt", encoding="utf-8") as fh:
            for lineno, line in enumerate(fh, 1):
                line = line.strip()
                if not line or line.startswith("#"):
                    continue
                parts = line.split(maxsplit=1)
                if len(parts) != 2 or len(parts[0]) != 128:
                    raise FetchError(f"{path}: line {lineno} is not '<sha512> <file name>': {line[:80]!r}")
                sums[parts[1].strip().lstrip("*").rsplit("/", 1)[-1]] = parts[0].lower()
    except (OSError, EOFError, UnicodeDecodeError) as exc:
        raise FetchError(f"{path}: unreadable checksum file ({exc}); delete it and fetch again") from exc
    return sums


def _hash_file(path: Path, hasher: Any) -> None:
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            hasher.update(chunk)


class _ThreadedHash:
    """SHA-512 computed in a worker thread while the next bytes arrive (hashlib releases the GIL)."""

    def __init__(self, hasher: Any) -> None:
        import queue
        import threading

        self._hasher = hasher
        self._queue: queue.Queue[bytes | None] = queue.Queue(maxsize=64)
        self._thread = threading.Thread(target=self._run, name="opencmap-sha512", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (chunk := self._queue.get()) is not None:
            self._hasher.update(chunk)

    def update(self, chunk: bytes) -> None:
        self._queue.put(chunk)

    def hexdigest(self) -> str:
        self.close()
        return str(self._hasher.hexdigest())

    def close(self) -> None:
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()


def _download(
    client: Any,
    url: str,
    target: Path,
    *,
    progress: FetchProgress,
    retries: int,
    backoff: float,
    notes: list[str],
    gunzip_to: Path | None = None,
) -> tuple[int, str, bool, int, StreamingGunzip | None]:
    """Download ``url`` to ``target.part`` (resuming it); returns ``(size, sha512, resumed, bytes fetched, gunzip)``.

    The part file is left in place (for a later resume) when the transfer fails after ``retries``.
    With ``gunzip_to``, a download from byte 0 is also decompressed as it arrives into that file
    (the returned :class:`StreamingGunzip`, to be finished by the caller); a resumed one is not
    (its beginning is not in the stream), and None is returned.
    """
    gunzip: StreamingGunzip | None = None
    import httpx

    part = target.with_name(target.name + ".part")
    hasher = hashlib.sha512()
    have = part.stat().st_size if part.exists() else 0
    resumed = have > 0
    if have:
        _hash_file(part, hasher)
    fetched = 0
    attempt = 0
    total: int | None = None
    started = False
    validator_file = part.with_name(part.name + ".validator")  # the server's ETag / Last-Modified of the part
    while True:
        headers = {"Range": f"bytes={have}-"} if have else {}
        if have and validator_file.exists():
            # resume only if the file on the server is still the one the part began (else the server sends it whole)
            headers["If-Range"] = validator_file.read_text().strip()
        try:
            with client.stream("GET", url, headers=headers) as response:
                if response.status_code in (200, 206):
                    validator = response.headers.get("ETag") or response.headers.get("Last-Modified")
                    if response.status_code == 200 and validator:
                        validator_file.write_text(validator)
                    elif response.status_code == 200:
                        validator_file.unlink(missing_ok=True)
                if response.status_code == 416 and have:
                    # the part is already the whole file (or longer): check it as it is
                    length = response.headers.get("Content-Range", "").rsplit("/", 1)[-1]
                    if length.isdigit() and int(length) == have:
                        return have, hasher.hexdigest(), resumed, fetched, None
                    _remove_part(part)
                    hasher, have, resumed = hashlib.sha512(), 0, False
                    notes.append(f"{target.name}: the partial download did not match the server's file; started again")
                    continue
                if response.status_code == 404:
                    raise FetchError(f"{url}: not found (HTTP 404); check the release catalogue or the --mirror URL")
                if response.status_code >= 400:
                    raise FetchError(f"{url}: the server answered HTTP {response.status_code}; try again later")
                if have and response.status_code == 200:
                    # the server ignored the range request, or the file changed since the part began: from zero
                    why = ("the file changed on the server since the partial download began" if "If-Range" in headers
                           and response.headers.get("Accept-Ranges") == "bytes" else "the server does not support range requests")
                    msg = f"{target.name}: {why}; restarted from zero ({_human(have)} discarded)"
                    log.warning(msg)
                    notes.append(msg)
                    hasher, have = hashlib.sha512(), 0
                    resumed = False  # fetched whole: reported as downloaded, not resumed
                    mode = "wb"
                elif response.status_code == 206:
                    content_range = response.headers.get("Content-Range", "")
                    start = content_range.removeprefix("bytes ").split("-", 1)[0]
                    if not start.isdigit() or int(start) != have:
                        raise FetchError(f"{url}: the server resumed at {content_range!r} where byte {have} was asked; delete {part} and fetch again")
                    length = content_range.rsplit("/", 1)[-1]
                    total = int(length) if length.isdigit() else None
                    mode = "ab"
                else:
                    length = response.headers.get("Content-Length")
                    total = int(length) if length is not None and length.isdigit() else None
                    mode = "wb"
                if not started:
                    progress.start(target.name, total, have)
                    started = True
                if gunzip_to is not None and mode == "wb":
                    gunzip = StreamingGunzip(gunzip_to, name=target.name)
                threaded = _ThreadedHash(hasher)
                try:
                    with open(part, mode) as fh:
                        for chunk in response.iter_raw():  # as received: a dropped connection loses nothing
                            fh.write(chunk)
                            threaded.update(chunk)
                            if gunzip is not None:
                                gunzip.feed(chunk)
                            have += len(chunk)
                            fetched += len(chunk)
                            progress.advance(len(chunk))
                finally:
                    threaded.close()
            if total is not None and have != total:
                raise httpx.RemoteProtocolError(f"got {have} of {total} bytes")
            progress.finish()
            return have, hasher.hexdigest(), resumed, fetched, gunzip
        except BaseException as exc:
            if gunzip is not None:
                gunzip.abort()  # a resumed transfer cannot continue the stream: decompressed afterwards instead
                gunzip = None
            if not isinstance(exc, httpx.TransportError):
                raise
            attempt += 1
            if attempt > retries:
                raise FetchError(
                    f"{url}: the transfer failed after {have} of {_human(total)} ({exc}); "
                    f"the partial file {part.name} is kept: run the same fetch again to resume it"
                ) from exc
            wait = backoff * 2 ** (attempt - 1)
            log.warning("%s: transfer interrupted at %s (%s); resuming in %.1f s (attempt %d of %d)",
                        target.name, _human(have), exc, wait, attempt, retries)
            time.sleep(wait)
            resumed = True


def _remove_part(part: Path) -> None:
    """Remove a partial download and its server validator (ETag / Last-Modified)."""
    part.unlink(missing_ok=True)
    part.with_name(part.name + ".validator").unlink(missing_ok=True)


def _plain_copy(target: Path) -> Path | None:
    """Where a GCTX in gzip (``.gctx.gz``) is decompressed for reading, or None for other files."""
    if not target.name.lower().endswith(".gctx.gz"):
        return None
    return decompressed_path(target)


def _verify_existing(target: Path, sums: dict[str, str] | None, planned: PlannedFile) -> tuple[str, str] | None:
    """``(sha512, verified_by)`` if a file already at ``target`` checks out, else None."""
    hasher = hashlib.sha512()
    expected = sums.get(target.name) if sums is not None else None
    size_ok = planned.size_source == "server" and planned.size == target.stat().st_size
    if expected is None and not size_ok:
        return None
    _hash_file(target, hasher)
    digest = hasher.hexdigest()
    if expected is not None:
        return (digest, "SHA512SUMS") if digest == expected else None
    return digest, "size"


def _record(manifest: dict[str, Any], out: Path, target: Path, url: str, digest: str, verified_by: str, role: str) -> None:
    st = target.stat()
    manifest["files"][target.name] = {
        "url": url, "size": st.st_size, "sha512": digest, "verified_by": verified_by, "role": role,
        "time": datetime.now(UTC).isoformat(timespec="seconds"), "mtime_ns": st.st_mtime_ns,
    }
    _write_manifest(out, manifest)


def fetch_release(
    name: str,
    dest: str | PathLike[str],
    *,
    levels: Iterable[int] = (),
    extra: Iterable[str] = (),
    mirror: str | None = None,
    progress: FetchProgress | None = None,
    retries: int = 5,
    backoff: float = 2.0,
    timeout: float = 60.0,
    check_disk: bool = True,
    decompress: bool = True,
) -> FetchResult:
    """Download release ``name`` into ``dest`` (see the module docstring); returns what was fetched and verified.

    Raises
    ------
    FetchError
        Unknown release, HTTP errors, a transfer that keeps failing (the ``.part`` is kept).
    ChecksumError
        A completed file whose SHA-512 (GEO) or size (LINCS 2020) does not match; its ``.part`` is removed.
    DiskSpaceError
        The bytes still to download do not fit on ``dest``'s disk (checked before anything is written).
    """
    started = time.perf_counter()
    rel = release(name)
    out = Path(dest)
    progress = progress or FetchProgress()
    client = _client(timeout)
    try:
        return _fetch(rel, out, client, levels=levels, extra=extra, mirror=mirror, progress=progress,
                      retries=retries, backoff=backoff, timeout=timeout, check_disk=check_disk, started=started,
                      decompress=decompress)
    finally:
        client.close()


def _fetch(
    rel: Release,
    out: Path,
    client: Any,
    *,
    levels: Iterable[int],
    extra: Iterable[str],
    mirror: str | None,
    progress: FetchProgress,
    retries: int,
    backoff: float,
    timeout: float,
    check_disk: bool,
    started: float,
    decompress: bool,
) -> FetchResult:
    plan = plan_fetch(rel.name, out, levels=levels, extra=extra, mirror=mirror, ask_server=True, timeout=timeout, _http=client)
    notes = list(plan.notes)
    missing = [f.url for f in plan.files if f.not_found and f.status != "verified"]
    if missing:
        raise FetchError(
            f"not found on the server (HTTP 404): {', '.join(missing)}; check the --mirror URL (it must serve the "
            f"official hosts' relative paths) or the release catalogue (opencmap fetch {rel.name} DEST --list). Nothing was downloaded."
        )
    if check_disk and not plan.fits(decompress=decompress):
        needed = plan.download_bytes + (plan.unpacked_bytes if decompress else 0)
        raise DiskSpaceError(
            f"{rel.name} needs {_human(needed)} more in {out}"
            f"{' (with the decompressed copies of the .gctx.gz matrices; --no-decompress skips them)' if decompress and plan.unpacked_bytes else ''}"
            f" but its disk has {_human(plan.free_bytes)} free "
            f"(with a {_human(DISK_MARGIN)} margin); free space or choose another DEST. Nothing was downloaded."
        )
    out.mkdir(parents=True, exist_ok=True)
    manifest = _read_manifest(out)
    manifest.update({"format": MANIFEST_FORMAT, "format_version": MANIFEST_VERSION, "release": rel.name, "base_url": plan.base_url})
    fetched_files: list[FetchedFile] = []
    bytes_downloaded = 0
    sums: dict[str, str] | None = None
    by_name = {f.name: f for f in rel.files}
    # the checksum file first (every other file is checked against it), then the small tables, the matrices last
    ordered = sorted(plan.files, key=lambda p: (by_name[p.name].role != "checksums", p.size is None, p.size or 0))
    # one connection pool (``client``) for the plan and every download
    for planned in ordered:
        entry = by_name[planned.name]
        target = planned.dest
        recorded = _recorded(manifest, target)
        is_sums = entry.role == "checksums"
        if recorded is not None:
            fetched_files.append(FetchedFile(entry.name, recorded["url"], target, recorded["size"], recorded["sha512"],
                                             recorded["verified_by"], "skipped"))
            if is_sums:
                sums = _parse_sha512sums(target)
            continue
        if target.exists():
            # present but not recorded (downloaded by hand, or changed since): verified as it is, else fetched anew
            existing = _verify_existing(target, sums, planned)
            if existing is not None:
                digest, verified_by = existing
                _record(manifest, out, target, planned.url, digest, verified_by, entry.role)
                notes.append(f"{target.name} was already present; verified by {verified_by}, not downloaded")
                fetched_files.append(FetchedFile(entry.name, planned.url, target, target.stat().st_size, digest, verified_by, "skipped"))
                if is_sums:
                    sums = _parse_sha512sums(target)
                continue
            notes.append(f"{target.name} was present but did not verify; downloaded again")
            target.unlink()
        plain = _plain_copy(target) if decompress else None
        size, digest, resumed, got, gunzip = _download(client, planned.url, target, progress=progress,
                                                       retries=retries, backoff=backoff, notes=notes, gunzip_to=plain)
        bytes_downloaded += got
        part = target.with_name(target.name + ".part")
        verified_by = "size"
        if sums is not None and not is_sums:
            expected = sums.get(target.name)
            if expected is None:
                notes.append(f"{target.name} is not listed in {rel.checksums}; checked by size only")
            elif expected != digest:
                _remove_part(part)
                if gunzip is not None:
                    gunzip.abort()
                raise ChecksumError(
                    f"{target.name}: SHA-512 {digest[:16]}... does not match {rel.checksums} ({expected[:16]}...); "
                    f"the download was corrupt or truncated and has been removed: run the same fetch again "
                    f"(if it fails again, the server's or mirror's copy is damaged)",
                    path=target,
                )
            else:
                verified_by = "SHA512SUMS"
        elif planned.size_source == "server" and planned.size is not None and size != planned.size:
            _remove_part(part)
            if gunzip is not None:
                gunzip.abort()
            raise ChecksumError(
                f"{target.name}: {size} bytes where the server announced {planned.size}; the download was "
                f"truncated or the file changed and has been removed: run the same fetch again",
                path=target,
            )
        os.replace(part, target)
        _remove_part(part)  # its validator
        _record(manifest, out, target, planned.url, digest, verified_by, entry.role)
        fetched_files.append(FetchedFile(entry.name, planned.url, target, size, digest, verified_by,
                                         "resumed" if resumed else "downloaded"))
        if gunzip is not None:
            copy = gunzip.finish()  # decompressed while downloading
            os.utime(copy)  # not older than the compressed file it copies
            log.info("%s: decompressed while downloading into %s", target.name, copy.name)
        if is_sums:
            sums = _parse_sha512sums(target)
            # files verified earlier without the sums (none in the normal order) stay as they are
    if decompress:
        for f in fetched_files:
            plain = _plain_copy(f.path)
            if plain is not None and not plain.exists():
                # resumed or fetched earlier: decompressed now, from the file (the stream had a gap)
                gunzip_file(f.path, plain)
                notes.append(f"{f.path.name}: decompressed after downloading into {plain.name}")
    _write_manifest(out, manifest)
    seconds = time.perf_counter() - started
    log.info("%s: %d files in %s (%s downloaded in %.1f s)", rel.name, len(fetched_files), out, _human(bytes_downloaded), seconds)
    return FetchResult(rel.name, out, out / MANIFEST_NAME, fetched_files, bytes_downloaded, seconds, notes)


def describe_plan(plan: FetchPlan) -> list[str]:
    """Human-readable lines of a plan (the CLI's ``--dry-run`` output)."""
    lines = [f"{plan.release} from {plan.base_url} into {plan.dest}"]
    for f in plan.files:
        size = _human(f.size) + ("" if f.size_source in ("server", "catalogue") else f" ({f.size_source})")
        size += " NOT FOUND on the server" if f.not_found else ""
        extra = f", {_human(f.have_bytes)} already in .part" if f.status == "partial" else ""
        lines.append(f"  {f.dest.name}  {size}  [{f.status}{extra}]")
    lines.append(f"to download: {_human(plan.download_bytes)}; free on disk: {_human(plan.free_bytes)}")
    if plan.unknown_sizes:
        lines.append(f"sizes unknown (not counted): {', '.join(plan.unknown_sizes)}")
    if plan.unpacked_bytes:
        lines.append(f"reading the .gctx.gz matrices makes decompressed copies next to them: +{_human(plan.unpacked_bytes)}")
    lines.extend(f"note: {n}" for n in plan.notes)
    return lines
