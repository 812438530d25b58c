"""``/genesets``: read uploaded GMT / GRP files into gene sets and queries (with the library readers).

``/genesets/parse`` reads one file; ``/genesets/queries`` turns an up file and/or a down file into
the queries the CLI would run for ``--up``/``--down`` (:func:`~opencmap.query.genesets.queries_from_files`),
so the web UI and the CLI pair uploads the same way.
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, File, Form, UploadFile

from opencmap.api.schemas import GeneSetsOut, UploadedQueries
from opencmap.errors import FormatError, GeneSetError

__all__ = ["router"]

router = APIRouter(prefix="/genesets", tags=["queries"])


@router.post("/parse", response_model=GeneSetsOut, summary="Read gene sets from an uploaded .gmt or .grp file")
async def parse_genesets(file: Annotated[UploadFile, File(description="A .gmt (several sets) or .grp/.txt (one set) file.")]) -> GeneSetsOut:
    from opencmap.io import read_gmt, read_grp

    name = Path(file.filename or "upload.grp").name
    suffix = name.rsplit(".", 1)[-1].lower() if "." in name else "grp"
    if suffix not in ("gmt", "grp", "txt"):
        raise FormatError(f"upload {name!r}: expected a .gmt, .grp or .txt file")
    payload = await file.read()
    with tempfile.TemporaryDirectory(prefix="opencmap-upload-") as tmp:
        path = Path(tmp) / f"upload.{suffix}"
        path.write_bytes(payload)
        try:
            if suffix == "gmt":
                sets = [{"name": s.name, "description": s.description, "genes": list(s.genes)} for s in read_gmt(path)]
                return GeneSetsOut(format="gmt", sets=sets)
            genes = read_grp(path)
        except FormatError as exc:
            raise FormatError(str(exc).replace(str(path), name)) from None
        except UnicodeDecodeError:
            raise FormatError(f"upload {name!r} is not a text file") from None
    return GeneSetsOut(format="grp", sets=[{"name": Path(name).stem, "description": "", "genes": genes}])


_NAME_OK = re.compile(r"^[A-Za-z0-9_.:+\- ]+$")
_NAME_BAD = re.compile(r"[^A-Za-z0-9_.:+\- ]")
_FILE_BAD = re.compile(r"[^A-Za-z0-9_.+\- ]")


def _upload_name(file: UploadFile, side: str) -> tuple[str, str]:
    """(file name without folders, format) of an upload; refuses other extensions."""
    given = Path((file.filename or "").replace("\\", "/")).name
    suffix = given.rsplit(".", 1)[-1].lower() if "." in given else "grp"
    if suffix not in ("gmt", "grp", "txt"):
        raise FormatError(f"{side} file {given[:100]!r}: expected a .gmt, .grp or .txt file")
    # a safe file name for the temporary copy (and the messages): no control characters or folders
    name = _FILE_BAD.sub("_", given)[-100:].lstrip(".") or f"{side}.{suffix}"
    return name, "gmt" if suffix == "gmt" else "grp"


@router.post("/queries", response_model=UploadedQueries, summary="Pair an uploaded up file and down file into queries")
async def upload_queries(
    # typed UploadFile (not "| None") so the schema says a binary file part, not "file or null"
    # (clients generated from it then send a file, never a plain field); both stay optional
    up: Annotated[UploadFile, File(description="Up sets: a .gmt (several queries) or .grp/.txt (one query).")] = None,  # type: ignore[assignment]
    down: Annotated[UploadFile, File(description="Down sets: a .gmt or .grp/.txt, the same format as up.")] = None,  # type: ignore[assignment]
    name: Annotated[str, Form(max_length=100, pattern=r"^[A-Za-z0-9_.:+\- ]+$", description="Name of a GRP query.")] = "query",
) -> UploadedQueries:
    """Up and down uploads stay on their sides: sets of the up file are up sets, paired with the
    down file's sets by name as ``opencmap query --up --down`` pairs them (``X_UP`` with ``X_DN``
    or identical names). Refuses what cannot be paired, a file with no sets or genes, and mixed
    GMT/GRP uploads."""
    from opencmap.query.genesets import queries_from_files

    uploads = {side: f for side, f in (("up", up), ("down", down)) if f is not None}
    if not uploads:
        raise GeneSetError("upload an up file and/or a down file (.gmt or .grp)")
    files: dict[str, str | None] = {"up": None, "down": None}
    formats = set()
    with tempfile.TemporaryDirectory(prefix="opencmap-upload-") as tmp:
        paths: dict[str, Path] = {}
        for side, f in uploads.items():
            fname, fmt = _upload_name(f, side)
            files[side] = fname
            formats.add(fmt)
            folder = Path(tmp) / side
            folder.mkdir()
            paths[side] = folder / fname  # fname has no folder part: Path(...).name above
            paths[side].write_bytes(await f.read())
        try:
            queries = queries_from_files(paths.get("up"), paths.get("down"), name=name)
        except (FormatError, GeneSetError) as exc:
            message = str(exc)
            for side, path in paths.items():
                message = message.replace(str(path), f"{side} file {files[side]!r}")
            raise type(exc)(message) from None
        except UnicodeDecodeError:
            raise FormatError(f"the upload {list(filter(None, files.values()))} is not a text file") from None
    fmt = formats.pop() if len(formats) == 1 else "grp"
    if fmt == "grp":
        for side in uploads:
            if not getattr(queries[0], side):
                raise GeneSetError(f"{side} file {files[side]!r} has no genes")
    notes: list[str] = []
    out: list[dict[str, object]] = []
    for q in queries:
        qname = q.name
        if not _NAME_OK.match(qname) or len(qname) > 100:
            qname = (_NAME_BAD.sub("_", qname).strip() or "query")[:100]
            notes.append(f"set name {q.name!r} renamed {qname!r} (query names use letters, digits, space and _.:+-)")
        out.append({"name": qname, "up": list(q.up), "down": list(q.down)})
    names = [q["name"] for q in out]
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})[:5]
        raise GeneSetError(f"the uploaded sets give repeated query names {dup}; give each query a distinct name")
    return UploadedQueries(format=fmt, files=files, queries=out, notes=notes)
