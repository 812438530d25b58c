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
        <space>/<kind>.tiles.npy       uint64 (rows, tiles) hash of every 512-column tile of a row
                                       (format 3; :mod:`opencmap.kernels.tilehash`)
        <space>/<kind>.crc.npy         uint64 (rows, chunks) xxh3 of every 16,384-column chunk of a row
                                       (format 2)
    backgrounds/<level>.g<N>/...       tau reference distributions (:mod:`opencmap.io.store.backgrounds`)
    .lock                              writer lock (flock): one process changes a store at a time

The manifest (JSON) holds ``format`` (:data:`STORE_FORMAT`), ``format_version``, ``generation``
(0 at build, +1 per committed change), ``created``, ``n_signatures``, ``default_space``,
``signature_major``, ``genes`` (file, n_genes, checksum), ``spaces`` (``{name: {gene_ids,
n_features}}``), ``segments`` (``[{name, n_signatures, files: {rel: {shape, dtype, bytes,
checksum, tile_hashes: {file, cols, algo}}}}]``; format 2: ``chunk_sums`` instead of
``tile_hashes``), ``backgrounds`` (``{key: entry}``; format 3: ``tile_hashes`` of ``values.npy``),
optionally ``pcl``, ``provenance`` and ``disk_estimate``, and (format 3) ``manifest_checksum``:
the xxh3 of the JSON of every other field, checked when the store is opened. Whole-file checksums
are ``xxh3_64:<hex>`` from format 3 on (``crc32:<hex>`` before; both are read).

Format versions: 1 (no chunk checksums: opens with an
:class:`~opencmap.errors.UncheckedStoreWarning`), 2 (per-chunk xxh3 checked by the block reader
before it hands a block out), 3 (per-tile hashes of every 2-D data file, checked where the data
are read: inside the WTCS kernel for the tiles of the query's genes it walks, by
:meth:`StoreSegment.check` for other readers; tau background values too). Whole-file checksums
(manifest ``checksum``) of small files (tables, gene lists, PCLs, background counts) are checked
when they are first read. Readers refuse newer versions (:class:`~opencmap.errors.VersionError`).
"""

from __future__ import annotations

__all__ = ["STORE_FORMAT", "STORE_FORMAT_VERSION"]

STORE_FORMAT = "opencmap-reference-store"
STORE_FORMAT_VERSION = 3  # 3: per-tile hashes (``*.tiles.npy``) checked where read; 2 (chunk xxh3) and 1 still open
_CHUNK_COLS = 16384  # columns per checksummed chunk of a 2-D data file (32 KB of ranks, 64 KB of scores)
_CHUNK_ALGO = "xxh3_64"  # chunk checksum (the reader also knows "crc32")
_LOCK = ".lock"

_SPACE_PREFERENCE = ("bing", "full", "aig", "lm")
_MANIFEST = "manifest.json"


_PCL_FILE = "pcl.gmt"
