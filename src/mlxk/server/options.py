"""ServerOptions: what `mlxk serve` was asked for (its flags); Settings hold the env."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from mlxk.config import Settings
from mlxk.errors import UsageError

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1", "[::1]")
# Browsers on this machine: any port of the loopback names.
DEFAULT_CORS_REGEX = r"^https?://(localhost|127\.0\.0\.1|\[::1\])(:\d{1,5})?$"
WILDCARD_HOSTS = ("0.0.0.0", "::", "")
INSECURE_WARNING = (
    "WARNING: serving on a non-loopback address without an API key (--insecure): anyone who "
    "can reach this port can use every model and the memory of this machine."
)


@dataclass(frozen=True)
class ServerOptions:
    host: str = "127.0.0.1"
    port: int = 8000
    models: tuple[str, ...] = ()  # preloaded and pinned
    api_key: str | None = None
    insecure: bool = False
    max_tokens: int = 4096  # ceiling per request; a request's default is min(this, context room)
    max_queue: int = 64  # admitted requests (running + waiting); beyond: 503 + Retry-After
    idle_ttl: float = 600.0  # seconds an unpinned model may sit unused before it is unloaded
    cors_origins: tuple[str, ...] = ()  # empty: loopback origins only
    allowed_hosts: tuple[str, ...] = ()  # extra Host header values to accept
    log_level: str = "info"
    memory_budget: int | None = None  # bytes for all loaded models; None: detected
    max_batch: int = 16  # concurrent sequences per text model in one batch
    max_image_pixels: int = 50_000_000
    max_inputs_per_request: int = 8  # images + audio clips in one chat request
    graceful_timeout: float = 3.0  # seconds in-flight requests get on SIGINT/SIGTERM
    retry_after: int = 2  # seconds a client told "busy" should wait

    @property
    def is_loopback(self) -> bool:
        return is_loopback(self.host)

    def host_allowlist(self) -> tuple[str, ...] | None:
        """Host header names accepted; None accepts any (wildcard bind without --allowed-host)."""
        if self.host in WILDCARD_HOSTS and not self.allowed_hosts:
            return None
        names = [*LOOPBACK_NAMES, *self.allowed_hosts]
        if self.host not in WILDCARD_HOSTS:
            names.append(self.host)
        return tuple(dict.fromkeys(n.lower() for n in names))


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a DNS name other than localhost: treat as reachable from outside


def check_bind(options: ServerOptions) -> str | None:
    """Refuse an unprotected non-loopback bind; the warning to print when --insecure allows it."""
    if options.is_loopback or options.api_key:
        return None
    if not options.insecure:
        raise UsageError(
            f"refusing to serve on {options.host} without --api-key: a non-loopback bind "
            "exposes every model. Give --api-key KEY (or --insecure to accept the risk)."
        )
    return INSECURE_WARNING


def validate(options: ServerOptions) -> None:
    if not 0 < options.port < 65536:
        raise UsageError(f"--port must be 1-65535, got {options.port}")
    if options.max_tokens <= 0:
        raise UsageError("--max-tokens must be positive")
    if options.max_queue <= 0:
        raise UsageError("--max-queue must be positive")
    if options.idle_ttl < 0:
        raise UsageError("--idle-ttl must be zero (never) or positive")
    if options.api_key is not None and len(options.api_key) < 8:
        raise UsageError("--api-key must be at least 8 characters")


def max_request_bytes(settings: Settings) -> int:
    """Largest request body: the biggest media limit as base64 (4/3) plus room for the JSON."""
    biggest = max(settings.max_audio_bytes, settings.max_image_bytes)
    return biggest * 4 // 3 + 256 * 1024
