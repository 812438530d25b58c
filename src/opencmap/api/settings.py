"""Server settings: read from ``OPENCMAP_*`` environment variables (or given explicitly).

The defaults serve the store built by ``opencmap demo`` when run from the same folder
(``opencmap-demo/store``, PCLs from ``opencmap-demo/compendium-demo-0/pcl.gmt``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

__all__ = ["Settings", "DEFAULT_STORE"]

#: where ``opencmap demo`` (default workdir ``opencmap-demo``) writes its store
DEFAULT_STORE = Path("opencmap-demo") / "store"


class Settings(BaseSettings):
    """Configuration of ``opencmap serve`` (environment variables ``OPENCMAP_<NAME>``).

    Result retention: every job's result, including each synchronous query's, is stored in the
    SQLite database (megabytes per query for a large store). ``max_stored_results`` keeps at most
    that many finished results and ``result_ttl_hours`` none older than that (0: no age limit).
    When a result is stored (and at start-up) the oldest beyond those bounds are deleted; their
    jobs stay listed with status ``expired`` and their results/downloads answer 410 Gone (resubmit
    the query). Queued and running jobs are never deleted. Free space is given back to the file
    system (incremental vacuum) only when more than a quarter of the database file is free.
    """

    model_config = SettingsConfigDict(env_prefix="OPENCMAP_", extra="ignore")

    store_path: Path = Field(DEFAULT_STORE, description="Reference store directory.")
    db_path: Path | None = Field(
        None, description="SQLite file of jobs and results (default: <store>/../opencmap-jobs.sqlite)."
    )
    pcl_path: Path | None = Field(
        None,
        description="PCL GMT (members = pert_ids). Default: a single compendium-*/pcl.gmt beside the store, if any.",
    )
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    workers: int = Field(1, ge=1, le=64, description="Threads running batch jobs.")
    api_token: str | None = Field(None, description="If set, /api requests need 'Authorization: Bearer <token>'.")
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list, description="Allowed CORS origins (none: CORS off).")
    max_genes_per_set: int = Field(1000, ge=1, le=100_000, description="Genes (ids/symbols) per up or down set.")
    max_sets_per_job: int = Field(1000, ge=1, le=100_000, description="Queries per job.")
    max_sync_queries: int = Field(1, ge=1, le=100, description="Queries answered synchronously by POST /queries.")
    max_body_bytes: int = Field(5_000_000, ge=1024, description="Largest request body (JSON or upload).")
    max_retries: int = Field(2, ge=0, le=10, description="Re-runs of a job interrupted by a shutdown or crash.")
    result_cache: int = Field(8, ge=1, le=1000, description="Job results kept in memory.")
    max_stored_results: int = Field(
        200, ge=1, le=1_000_000, description="Finished results kept in the database; older ones expire (410 Gone)."
    )
    result_ttl_hours: float = Field(
        168.0, ge=0, le=1_000_000, description="Hours a finished result is kept (0: no age limit)."
    )

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        if isinstance(value, str):
            return [v.strip() for v in value.split(",") if v.strip()]
        return value

    def result_ttl_seconds(self) -> float | None:
        """``result_ttl_hours`` in seconds, or None for no age limit."""
        return self.result_ttl_hours * 3600.0 if self.result_ttl_hours > 0 else None

    def resolved_db_path(self) -> Path:
        """The SQLite path (default beside the store)."""
        if self.db_path is not None:
            return Path(self.db_path)
        return Path(self.store_path).resolve().parent / "opencmap-jobs.sqlite"

    def resolved_pcl_path(self) -> Path | None:
        """The PCL GMT to use, or None."""
        if self.pcl_path is not None:
            return Path(self.pcl_path)
        found = sorted(Path(self.store_path).resolve().parent.glob("compendium-*/pcl.gmt"))
        return found[0] if len(found) == 1 else None
