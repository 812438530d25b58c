"""Server settings: read from ``OPENCMAP_*`` environment variables (or given explicitly).

The defaults serve the store built by ``opencmap demo`` when run from the same folder
(``opencmap-demo/store``, PCLs from ``opencmap-demo/compendium-demo-0/pcl.gmt``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import ipaddress
import logging

from pydantic import AliasChoices, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from opencmap.errors import ConfigError

__all__ = ["Settings", "DEFAULT_STORE", "is_loopback"]

log = logging.getLogger(__name__)

#: where ``opencmap demo`` (default workdir ``opencmap-demo``) writes its store
DEFAULT_STORE = Path("opencmap-demo") / "store"


class Settings(BaseSettings):
    """Configuration of ``opencmap serve`` (environment variables ``OPENCMAP_<NAME>``).

    Result retention: every job's result, including each synchronous query's, is a file in the
    job's folder beside the SQLite database (megabytes per query for a large store).
    ``max_stored_results`` keeps at most that many finished results, ``max_results_bytes`` at most
    that many bytes of them, and ``result_ttl_hours`` none older than that (0: no age limit). At
    start-up, when a result is stored and every ``retention_interval_seconds`` the oldest beyond
    those bounds are deleted; their jobs stay listed with status ``expired`` and their
    results/downloads answer 410 Gone (resubmit the query), until the rows themselves are deleted
    (``expired_row_hours`` after expiring, 0: at once; ``result_ttl_hours`` after failing; or
    beyond ``max_job_rows``). A job whose row was deleted still answers 410 Gone (a small
    tombstone of its id is kept), never 404 as for an unknown id. Queued and running jobs are
    never deleted. Free space is given back to the file system (incremental
    vacuum) when more than a quarter of the database file is free.

    Exposure: the API token is read from ``OPENCMAP_API_TOKEN`` / ``OPENCMAP_TOKEN`` or from the
    file ``OPENCMAP_TOKEN_FILE`` (first line); an empty token is refused. Listening beyond loopback
    without a token is refused unless ``allow_open`` (:meth:`check_exposure`).
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
    workers: int = Field(
        2, ge=1, le=64, description="Threads running batch jobs (at most; how many run at once is set by job_memory_mb)."
    )
    job_memory_mb: int = Field(
        2048, ge=1, le=10_000_000,
        description="Memory budget of running batch jobs (MB); a job larger than it runs alone.",
    )  # fmt: skip
    sync_lanes: int = Field(2, ge=1, le=64, description="Synchronous queries run at once (their own lane, beside jobs).")
    scheduler: str | None = Field(
        None,
        description="Dask scheduler address (e.g. tcp://HOST:8786): batch jobs score on its cluster, whose workers see the "
        "store at the same path; synchronous queries stay on this server.",
    )
    api_token: str | None = Field(
        None,
        validation_alias=AliasChoices("api_token", "OPENCMAP_API_TOKEN", "OPENCMAP_TOKEN"),
        description="If set, /api requests need 'Authorization: Bearer <token>'.",
    )
    token_file: Path | None = Field(
        None,
        validation_alias=AliasChoices("token_file", "OPENCMAP_TOKEN_FILE"),
        description="File whose first line is the API token (instead of api_token).",
    )
    allow_open: bool = Field(False, description="Allow listening beyond loopback without an API token.")
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list, description="Allowed CORS origins (none: CORS off).")
    max_genes_per_set: int = Field(1000, ge=1, le=100_000, description="Genes (ids/symbols) per up or down set.")
    max_sets_per_job: int = Field(1000, ge=1, le=100_000, description="Queries per job.")
    max_sync_queries: int = Field(1, ge=1, le=100, description="Queries answered synchronously by POST /queries.")
    max_body_bytes: int = Field(5_000_000, ge=1024, description="Largest request body (JSON or upload).")
    max_retries: int = Field(2, ge=0, le=10, description="Re-runs of a job interrupted by a shutdown or crash.")
    result_cache: int = Field(8, ge=1, le=1000, description="Job results kept in memory (at most).")
    result_cache_mb: int = Field(512, ge=1, le=10_000_000, description="Memory of the job results kept in memory (MB).")
    max_stored_results: int = Field(
        200, ge=1, le=1_000_000, description="Finished results kept in the database; older ones expire (410 Gone)."
    )
    result_ttl_hours: float = Field(
        168.0, ge=0, le=1_000_000, description="Hours a finished result is kept (0: no age limit)."
    )
    max_results_bytes: int = Field(
        10 * 2**30, ge=1, description="Bytes of finished results kept on disk; the oldest beyond expire (410 Gone)."
    )
    expired_row_hours: float = Field(
        24.0, ge=0, le=1_000_000, description="Hours an expired job's row is still listed before it is deleted (0: at once)."
    )
    max_job_rows: int = Field(
        10_000, ge=1, le=100_000_000, description="Finished job rows kept in the database (failed and expired go first)."
    )
    retention_interval_seconds: float = Field(
        60.0, gt=0, le=86_400, description="How often the retention bounds are enforced on an idle server."
    )

    @field_validator("api_token", mode="after")
    @classmethod
    def _no_empty_token(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("the API token is empty; give a non-empty token, or none to run without one")
        return value.strip() if value is not None else None

    @model_validator(mode="after")
    def _read_token_file(self) -> Settings:
        if self.token_file is not None:
            if self.api_token is not None:
                raise ValueError("give the API token either directly or as a file (token_file), not both")
            try:
                text = Path(self.token_file).read_text(encoding="utf-8")
            except OSError as exc:
                raise ValueError(f"cannot read the token file {self.token_file}: {exc.strerror or exc}") from exc
            token = text.splitlines()[0].strip() if text.strip() else ""
            if not token:
                raise ValueError(f"the token file {self.token_file} is empty; put the token on its first line")
            self.api_token = token
        return self

    def check_exposure(self) -> None:
        """Refuse to listen beyond loopback without an API token unless ``allow_open``; warn with it."""
        if self.api_token or is_loopback(self.host):
            return
        if not self.allow_open:
            raise ConfigError(
                f"refusing to listen on {self.host} (beyond this machine) without an API token: anyone who can "
                "reach it could run queries and read every result. Set OPENCMAP_TOKEN or --token-file, "
                "or pass --allow-open to serve it open on purpose"
            )
        log.warning("serving on %s without an API token (--allow-open): anyone who can reach it can use it", self.host)

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


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1)."""
    if host.strip().lower() in ("localhost", "localhost.localdomain", "ip6-localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
