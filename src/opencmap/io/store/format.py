"""The reference store's on-disk format: layout, manifest fields and format versions.

A store is a directory::

    manifest.json                      format name + version, generation, spaces, segments, checksums,
                                       disk estimate, provenance (release, files, filters, notes)
    genes.parquet                      the gene table (``pr_gene_id`` + annotations), input row order
    pcl.gmt                            perturbagen classes given at build (optional; queries use them)
    segments/seg-00000/
        sig_info.parquet               signature metadata of this segment (store order)
        <space>/ranks.npy              uint16 (n_features, n_sigs)  gene-major, 1 = largest, 0 = missing
        <space>/scores.npy             float32 (n_features, n_sigs) gene-major
        <space>/scores_by_sig.npy      float32 (n_sigs, n_features) signature-major (optional)
        <space>/<kind>.crc.npy         uint64 (rows, chunks) xxh3 of every 16,384-column chunk of a row
    backgrounds/<level>.g<N>/...       tau reference distributions (:mod:`opencmap.io.store.backgrounds`)
    .lock                              writer lock (flock): one process changes a store at a time

The manifest (JSON) holds ``format`` (:data:`STORE_FORMAT`), ``format_version``, ``generation``
(0 at build, +1 per committed change), ``created``, ``n_signatures``, ``default_space``,
``signature_major``, ``genes`` (file, n_genes, checksum), ``spaces`` (``{name: {gene_ids,
n_features}}``), ``segments`` (``[{name, n_signatures, files: {rel: {shape, dtype, bytes,
checksum, chunk_sums: {file, cols, algo}}}}]``), ``backgrounds`` (``{key: entry}``), and
optionally ``pcl``, ``provenance`` and ``disk_estimate``.

Format versions: 1 (no chunk checksums: opens with an
:class:`~opencmap.errors.UncheckedStoreWarning`), 2 (per-chunk checksums checked as queries read).
Readers refuse newer versions (:class:`~opencmap.errors.VersionError`).
"""

from __future__ import annotations

__all__ = ["STORE_FORMAT", "STORE_FORMAT_VERSION"]

STORE_FORMAT = "opencmap-reference-store"
STORE_FORMAT_VERSION = 2  # 2: per-chunk checksums (``*.crc.npy``, xxh3) checked as queries read; 1 still opens
_CHUNK_COLS = 16384  # columns per checksummed chunk of a 2-D data file (32 KB of ranks, 64 KB of scores)
_CHUNK_ALGO = "xxh3_64"  # chunk checksum (the reader also knows "crc32")
_LOCK = ".lock"

_SPACE_PREFERENCE = ("bing", "full", "aig", "lm")
_MANIFEST = "manifest.json"


_PCL_FILE = "pcl.gmt"
