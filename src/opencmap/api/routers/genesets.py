"""``/genesets/parse``: read an uploaded GMT or GRP file into gene sets (with the library readers)."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, File, UploadFile

from opencmap.api.schemas import GeneSetsOut
from opencmap.errors import FormatError

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
