"""The public surface of opencmap.io is small and pinned."""

from __future__ import annotations

import opencmap.io as io_api


def test_public_names():
    assert sorted(io_api.__all__) == sorted(
        [
            "read_gct", "read_gctx", "read_meta", "write_gct", "write_gctx", "write", "GCTXWriter", "GCTXFile",
            "gct_info", "GCTFileInfo", "is_gctx", "read_gmt", "write_gmt", "read_grp", "write_grp",
            "read_table", "write_table", "concat_files", "atomic_write_path",
        ]
    )
    for name in io_api.__all__:
        assert getattr(io_api, name) is not None
