"""The settings of `janus serve`, checked where they are built (a bad value is one clear error)."""

from __future__ import annotations

import os
from dataclasses import dataclass

from janusgen.config import option
from janusgen.errors import JanusError


@dataclass(frozen=True)
class ServeConfig:
    """Every field is an option of `janus serve` (janusgen.cli.decode builds them from these)."""

    # loopback by default: exposing the service is an explicit choice
    host: str = option("127.0.0.1", "address to listen on")
    port: int = option(8000, "port")
    max_wait_ms: float = option(5.0, "gather overlapping requests for up to this many ms into one batch")
    max_batch_tokens: int = option(6000, "source tokens per batch (EOS counted)")
    max_batch_texts: int = option(256, "texts per batch; 1 turns micro-batching off")
    max_queue: int = option(512, "texts waiting or decoding at most; more is answered 503")
    max_texts: int = option(64, "texts per request")
    max_chars: int = option(2000, "characters per text")
    max_body_bytes: int = option(1_000_000, "request body size")
    # the caps a request's decoding settings meet: DecodeConfig's fields name theirs (serve_limit)
    max_beam: int = option(16, "largest beam / length_beam a request may ask for")
    max_iterations: int = option(50, "most NAR iterations a request may ask for")
    request_timeout_s: float = option(120.0, "a request not answered within this is answered 503")
    body_timeout_s: float = option(
        30.0, "a request whose body has not fully arrived within this is answered 408"
    )
    graceful_timeout_s: float = option(30.0, "on shutdown, time in-flight requests get to finish")
    # 0: one less than the cores this process may use (at least 1), leaving one to the event loop: with
    # every core in the decoding team, the served latency was 1.5x a direct call and the throughput at
    # 32 clients 0.7x (2 cores, BENCHMARKS.md)
    threads: int = option(
        0, "decoding threads; 0: one less than the cores, leaving one to the HTTP event loop"
    )

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise JanusError(f"--port {self.port}: must be between 0 and 65535")
        if not 0 <= self.max_wait_ms <= 1000:
            raise JanusError(f"--max-wait-ms {self.max_wait_ms}: must be between 0 and 1000")
        for name in (
            "max_batch_tokens",
            "max_batch_texts",
            "max_queue",
            "max_texts",
            "max_chars",
            "max_body_bytes",
            "max_beam",
            "max_iterations",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise JanusError(f"--{name.replace('_', '-')} {value!r}: must be an integer of at least 1")
        if isinstance(self.threads, bool) or not isinstance(self.threads, int) or self.threads < 0:
            raise JanusError(f"--threads {self.threads!r}: must be 0 (automatic) or a positive integer")
        for name in ("request_timeout_s", "body_timeout_s", "graceful_timeout_s"):
            if not getattr(self, name) > 0:
                raise JanusError(f"--{name.replace('_', '-')} {getattr(self, name)}: must be positive")
        if self.max_texts > self.max_queue:
            raise JanusError(
                f"--max-texts {self.max_texts} exceeds --max-queue {self.max_queue}: no request could fit"
            )

    def decode_threads(self) -> int:
        """The decoding threads `threads` asks for: 0 is one less than the usable cores, at least 1."""
        if self.threads:
            return self.threads
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        return max(1, cores - 1)
