"""The built wheel is complete: installed with the locked dependencies into a fresh venv,
`incidents serve` and `incidents worker` run anywhere and deliver."""

from __future__ import annotations

import fcntl
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
from tests.delivery_support import Receiver
from tests.support import ADMIN_TOKEN, event, wait_for

# Building the wheel and installing the locked dependencies into a fresh venv is pip's work,
# which a loaded two-core machine can stretch well past the suite's two minutes per test.
pytestmark = pytest.mark.timeout(900)
ROOT = Path(__file__).resolve().parent.parent
# What a source checkout needs to build the wheel (the packaged defaults link to the last two).
SOURCES = ("pyproject.toml", "README.md", "src", "schemas", "policies")


def run(*args: str | Path, cwd: Path | None = None) -> str:
    done = subprocess.run(
        [str(a) for a in args], cwd=cwd, capture_output=True, text=True, timeout=600
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


@pytest.fixture(scope="session")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with the dependencies as locked in requirements/runtime.txt and the wheel
    on top, resolving nothing; yields its bin folder. Built once per run: under pytest-xdist
    the first worker to need it builds it in the run's shared temporary folder while the
    others wait on a lock (each building its own took three times the work on two cores)."""
    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent  # the run's folder, above each worker's own
    tmp = base / "wheel"
    with (base / "wheel.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        done = tmp / "installed"  # written last: a build that failed is made again
        if not done.exists():
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir()
            install(tmp)
            done.touch()
    return tmp / "venv" / "bin"


def install(tmp: Path) -> None:
    """Build the wheel in ``tmp`` and install it, with the locked dependencies, into the venv
    ``tmp``/venv."""
    wheel = build_wheel(tmp)
    venv = tmp / "venv"
    # This pip installs into the venv (``--python``), which so needs none of its own (making
    # one costs seconds); the installed modules are compiled when first imported.
    run(sys.executable, "-m", "venv", "--without-pip", venv)
    pip = (sys.executable, "-m", "pip", "--python", venv / "bin" / "python")
    install = (*pip, "install", "--quiet", "--disable-pip-version-check", "--no-compile")
    run(*install, "--require-hashes", "-r", ROOT / "requirements" / "runtime.txt", cwd=tmp)
    run(*install, "--no-deps", wheel, cwd=tmp)
    run(*pip, "check", cwd=tmp)  # the lock covers every need


def clean_environ() -> dict[str, str]:
    """This environment without any INCIDENTS_ setting or path that could reach the checkout."""
    drop = ("INCIDENTS_", "PYTHON", "VIRTUAL_ENV")
    return {k: v for k, v in os.environ.items() if not k.startswith(drop)}


def installed_environ(redis_url: str) -> dict[str, str]:
    """The installed gateway's settings: the throwaway Redis, and sinks on this machine allowed
    (the test's receiver listens on loopback, over plain HTTP)."""
    return clean_environ() | {
        "INCIDENTS_REDIS_URL": redis_url,
        "INCIDENTS_ADMIN_TOKEN": ADMIN_TOKEN,
        "INCIDENTS_ALLOW_PRIVATE_SINKS": "true",
        "INCIDENTS_ALLOW_INSECURE_SINKS": "true",
    }


def stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        raise


@pytest.fixture
def served(installed: Path, redis_url: str, tmp_path: Path) -> Iterator[str]:
    """`incidents serve` from the venv, started in an empty folder; yields its URL."""
    empty = tmp_path / "empty"
    empty.mkdir()
    port = free_port()
    env = installed_environ(redis_url) | {"INCIDENTS_PORT": str(port)}
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
        stop(process)


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


@pytest.mark.slow
def test_the_installed_worker_delivers_a_signed_event(
    installed: Path, served: str, redis_url: str, rx: Receiver, tmp_path: Path
) -> None:
    """`incidents worker` from the same venv, in an empty folder, delivers an accepted event to a
    subscription, signed as an independent verifier expects."""
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    created = httpx.post(
        f"{served}/v1/subscriptions", json={"sink": rx.sink("/wheel")}, headers=admin, timeout=10
    )
    assert created.status_code == 201, created.text
    rx.secrets["/wheel"] = created.json()["secret"]
    sent = event()
    accepted = httpx.post(
        f"{served}/v1/events",
        content=json.dumps(sent),
        headers=admin | {"Content-Type": "application/cloudevents+json"},
        timeout=10,
    )
    assert accepted.status_code == 202, accepted.text
    empty = tmp_path / "worker-folder"
    empty.mkdir()
    log = tmp_path / "worker.log"
    with log.open("wb") as out:
        worker = subprocess.Popen(
            [str(installed / "incidents"), "worker"],
            cwd=empty,
            env=installed_environ(redis_url),
            stdout=out,
            stderr=out,
        )
    try:
        wait_for(lambda: rx.at("/wheel"), 60, f"a delivery (worker log: {log})")
    finally:
        stop(worker)
    (got,) = rx.at("/wheel")
    assert got.verified
    assert got.event["id"] == sent["id"]
    assert not any(empty.iterdir())
