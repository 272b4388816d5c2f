"""The built wheel is complete: installed into a fresh venv, `incidents serve` runs anywhere."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from incidents.store.embedded import free_port
from tests.support import ADMIN_TOKEN, event

ROOT = Path(__file__).resolve().parent.parent
# What a source checkout needs to build the wheel (the packaged defaults link to the last two).
SOURCES = ("pyproject.toml", "README.md", "src", "schemas", "policies")


def run(*args: str | Path, cwd: Path | None = None) -> str:
    done = subprocess.run(
        [str(a) for a in args], cwd=cwd, capture_output=True, text=True, timeout=180
    )
    assert done.returncode == 0, f"{args} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def build_wheel(tmp: Path) -> Path:
    """The wheel as ``pip install .`` builds it, from a copy so the checkout stays clean."""
    tree = tmp / "tree"
    for name in SOURCES:
        source = ROOT / name
        if source.is_dir():
            ignore = shutil.ignore_patterns("__pycache__", "*.egg-info")
            shutil.copytree(source, tree / name, symlinks=True, ignore=ignore)
        else:
            tree.mkdir(exist_ok=True)
            shutil.copy2(source, tree / name)
    out = tmp / "wheels"
    run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", out, tree)
    (wheel,) = out.glob("incidents-*.whl")
    return wheel


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with the wheel and its dependencies installed; yields its bin folder."""
    tmp = tmp_path_factory.mktemp("wheel")
    wheel = build_wheel(tmp)
    venv = tmp / "venv"
    run(sys.executable, "-m", "venv", venv)
    python = venv / "bin" / "python"
    run(python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", wheel)
    return venv / "bin"


def clean_environ() -> dict[str, str]:
    """This environment without any INCIDENTS_ setting or path that could reach the checkout."""
    drop = ("INCIDENTS_", "PYTHON", "VIRTUAL_ENV")
    return {k: v for k, v in os.environ.items() if not k.startswith(drop)}


@pytest.fixture
def served(installed: Path, redis_url: str, tmp_path: Path) -> Iterator[str]:
    """`incidents serve` from the venv, started in an empty folder; yields its URL."""
    empty = tmp_path / "empty"
    empty.mkdir()
    port = free_port()
    env = clean_environ() | {
        "INCIDENTS_REDIS_URL": redis_url,
        "INCIDENTS_ADMIN_TOKEN": ADMIN_TOKEN,
        "INCIDENTS_PORT": str(port),
    }
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(installed / "incidents"), "serve"], cwd=empty, env=env, stdout=out, stderr=out
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None:
                pytest.fail(f"incidents serve exited {process.returncode}:\n{log.read_text()}")
            try:
                if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"incidents serve was not ready in 30 s:\n{log.read_text()}")
            time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.mark.slow
def test_the_wheel_ships_every_lua_script_and_the_default_schemas_and_policies(
    installed: Path,
) -> None:
    """The installed package holds all Lua scripts, schemas and policies, not the checkout's."""
    code = (
        "import incidents, incidents.app, pathlib; "
        "root = pathlib.Path(incidents.__file__).parent; print(root); "
        "print(*sorted(p.relative_to(root).as_posix() for p in root.rglob('*') "
        "if p.suffix in ('.lua', '.json', '.yaml')))"
    )
    out = run(installed / "python", "-c", code, cwd=installed).split("\n")
    assert Path(out[0]).is_relative_to(installed.parent), out[0]
    shipped = set(out[1].split())
    in_checkout = {
        p.relative_to(ROOT / "src" / "incidents").as_posix()
        for p in (ROOT / "src" / "incidents").rglob("*.lua")
    }
    assert in_checkout and in_checkout <= shipped
    assert "defaults/policies/default.yaml" in shipped
    schemas = {p.relative_to(ROOT).as_posix() for p in (ROOT / "schemas").rglob("*.json")}
    assert {f"defaults/{name}" for name in schemas} <= shipped


@pytest.mark.slow
def test_serve_from_an_empty_folder_uses_the_packaged_defaults(served: str) -> None:
    """With no schemas or policies folder set or present, serve is ready and accepts events."""
    assert httpx.get(f"{served}/readyz", timeout=5).json()["status"] == "ready"
    response = httpx.post(
        f"{served}/v1/events",
        content=json.dumps(event()),
        headers={
            "Authorization": f"Bearer {ADMIN_TOKEN}",
            "Content-Type": "application/cloudevents+json",
        },
        timeout=10,
    )
    assert response.status_code == 202, response.text
    assert response.json()["accepted"][0]["incident"].startswith("INC-")
