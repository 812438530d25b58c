"""``opencmap serve`` start-up checks, settings, and the import-weight rule."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

from click.testing import CliRunner


def test_import_opencmap_does_not_import_fastapi():
    code = "import sys, opencmap, opencmap.cli; print(any(m.split('.')[0] in ('fastapi', 'uvicorn', 'starlette') for m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_serve_names_the_extra_when_fastapi_is_missing(monkeypatch):
    from opencmap.cli import serve

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "fastapi" else real(name, *a))
    result = CliRunner().invoke(serve.command, [])
    assert result.exit_code != 0
    assert "pip install 'opencmap[serve]'" in result.output and "fastapi" in result.output


def test_serve_reports_a_missing_store_in_one_line(tmp_path):
    out = subprocess.run(
        [sys.executable, "-c", "from opencmap.cli import main; main()", "serve", "--store", str(tmp_path / "none"), "--port", "0"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == 2
    assert out.stderr.strip().startswith("error: no reference store at") and "Traceback" not in out.stderr


def test_settings_from_environment_and_defaults(monkeypatch, tmp_path):
    from opencmap.api.settings import DEFAULT_STORE, Settings

    assert Settings().store_path == DEFAULT_STORE  # where `opencmap demo` writes its store
    (tmp_path / "compendium-demo-0").mkdir()
    (tmp_path / "compendium-demo-0" / "pcl.gmt").write_text("P\t\tBRD-1\tBRD-2\n")
    monkeypatch.setenv("OPENCMAP_STORE_PATH", str(tmp_path / "store"))
    monkeypatch.setenv("OPENCMAP_CORS_ORIGINS", "http://a.example, http://b.example")
    monkeypatch.setenv("OPENCMAP_WORKERS", "3")
    s = Settings()
    assert s.cors_origins == ["http://a.example", "http://b.example"] and s.workers == 3
    assert s.resolved_pcl_path() == tmp_path / "compendium-demo-0" / "pcl.gmt"
    assert s.resolved_db_path() == tmp_path / "opencmap-jobs.sqlite"
    assert Settings(db_path=tmp_path / "x.sqlite").resolved_db_path() == tmp_path / "x.sqlite"


def test_serve_help_names_the_settings_defaults(monkeypatch):
    from opencmap.api.settings import Settings
    from opencmap.cli import serve

    def help_text() -> str:
        result = CliRunner().invoke(serve.command, ["--help"], terminal_width=400)
        assert result.exit_code == 0, result.output
        return " ".join(result.output.split())

    text = help_text()
    assert "default 200]" in text and "default 168]" in text and "[default 127.0.0.1]" in text and "[default 8000]" in text
    assert "{default}" not in text
    monkeypatch.setattr(Settings.model_fields["max_stored_results"], "default", 321)  # the help follows the setting
    monkeypatch.setattr(Settings.model_fields["result_ttl_hours"], "default", 2.5)
    text = help_text()
    assert "default 321]" in text and "default 2.5]" in text
