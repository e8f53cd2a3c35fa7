"""Settings, schemas, errors, Redis keys and telemetry shared by the API and the workers."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("log-analyzer")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"
