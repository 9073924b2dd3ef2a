"""`pip install .` puts one import name, `signoff`, in site-packages, and lives beside PyPI's `tools` and `notifiers`.

Installing signoff used to put four generic top-level packages (`server`, `tools`, `storage`, `notifiers`) into
site-packages: PyPI's `notifiers` then overwrote signoff's, and uninstalling it broke signoff silently.
"""

from __future__ import annotations

import json
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow

AGENT = """
import anyio, json, sys
from mcp import Client, StdioServerParameters

async def main() -> None:
    params = StdioServerParameters(command=sys.argv[1], args=["serve"], env={"SIGNOFF_DB": sys.argv[2]})
    async with Client(params) as client:
        result = await client.call_tool(
            "request_approval", {"action": "db.drop_table", "summary": "drop the old table", "confidence": 0.2}
        )
        print(json.dumps(result.structured_content))

anyio.run(main)
"""


def run(*args: str | Path, cwd: Path) -> str:
    done = subprocess.run([str(a) for a in args], cwd=cwd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"{args} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    run(sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", out, ROOT, cwd=out)
    (built,) = out.glob("signoff-*.whl")
    return built


def site_packages(python: Path) -> Path:
    code = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    return Path(run(python, "-c", code, cwd=python.parent).strip())


def fresh_venv(where: Path) -> Path:
    """A new virtual environment that sees this one's dependencies (mcp, ...) but not its signoff or the repo."""
    venv.create(where, with_pip=True)
    python = where / "bin" / "python"
    (site_packages(python) / "_signoff_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return python


def test_the_wheel_installs_only_signoff(wheel: Path, tmp_path: Path) -> None:
    python = fresh_venv(tmp_path / "venv")
    run(python, "-m", "pip", "install", "-q", "--no-deps", wheel, cwd=tmp_path)
    site = site_packages(python)
    installed = {p.name for p in site.iterdir() if p.is_dir() and not p.name.endswith((".dist-info", "__pycache__"))}
    assert "signoff" in installed
    assert not installed & {"server", "tools", "storage", "notifiers"}
    top_level = next(site.glob("signoff-*.dist-info")) / "top_level.txt"
    if top_level.exists():  # newer setuptools may omit it; the directory listing above is what matters
        assert top_level.read_text().split() == ["signoff"]
    for package in ("server", "tools", "storage", "notifiers"):
        assert (site / "signoff" / package / "py.typed").exists()


def test_signoff_works_beside_pypi_tools_and_notifiers(wheel: Path, tmp_path: Path) -> None:
    python = fresh_venv(tmp_path / "venv")
    bin_dir = python.parent
    run(python, "-m", "pip", "install", "-q", "--no-deps", wheel, cwd=tmp_path)
    run(python, "-m", "pip", "install", "-q", "--no-deps", "tools", "notifiers", cwd=tmp_path)
    site = site_packages(python)
    # find_spec, not import: PyPI's notifiers needs requests, which a fresh venv lacks; what matters is whose files
    where = "from importlib.util import find_spec as f; print(f('tools').origin); print(f('notifiers').origin)"
    origins = run(python, "-c", where, cwd=tmp_path)
    assert origins.split() == [str(site / "tools" / "__init__.py"), str(site / "notifiers" / "__init__.py")]

    assert "serve" in run(bin_dir / "signoff", "--help", cwd=tmp_path)
    (tmp_path / "agent.py").write_text(AGENT)
    status = json.loads(run(python, tmp_path / "agent.py", bin_dir / "signoff", tmp_path / "s.db", cwd=tmp_path))
    assert status["status"] == "pending" and status["action"] == "db.drop_table"

    run(python, "-m", "pip", "uninstall", "-q", "-y", "notifiers", "tools", cwd=tmp_path)  # used to delete signoff's
    assert "serve" in run(bin_dir / "signoff", "--help", cwd=tmp_path)
    run(python, "-c", "from signoff.notifiers import ConsoleNotifier", cwd=tmp_path)
