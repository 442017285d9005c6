"""Counters and histograms of the service, rendered in the Prometheus text format (no client library)."""

from __future__ import annotations

import bisect
import threading
from collections import Counter

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class Histogram:
    def __init__(self, buckets: tuple[float, ...]) -> None:
        self.buckets = buckets
        self.counts = [0] * (len(buckets) + 1)  # the last one: above every bucket (+Inf)
        self.total = 0.0
        self.n = 0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.buckets, value)] += 1
        self.total += value
        self.n += 1

    def render(self, name: str) -> list[str]:
        lines, running = [], 0
        for bound, count in zip((*self.buckets, float("inf")), self.counts, strict=True):
            running += count
            le = "+Inf" if bound == float("inf") else f"{bound:g}"
            lines.append(f'{name}_bucket{{le="{le}"}} {running}')
        return [*lines, f"{name}_sum {self.total:.6f}", f"{name}_count {self.n}"]


class Metrics:
    """Thread-safe: the batch worker and the request handlers update it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: Counter[int] = Counter()  # by HTTP status
        self.latency = Histogram(LATENCY_BUCKETS)
        self.batch_texts = Histogram(BATCH_BUCKETS)
        self.texts = 0
        self.tokens = 0  # generated tokens, EOS excluded
        self.decode_seconds = 0.0
        self.queued = 0

    def request(self, status: int, seconds: float) -> None:
        with self._lock:
            self.requests[status] += 1
            self.latency.observe(seconds)

    def batch(self, texts: int, tokens: int, seconds: float) -> None:
        with self._lock:
            self.batch_texts.observe(texts)
            self.texts += texts
            self.tokens += tokens
            self.decode_seconds += seconds

    def render(self) -> str:
        with self._lock:
            out = [
                "# HELP janus_requests_total HTTP requests to /translate by status.",
                "# TYPE janus_requests_total counter",
            ]
            out += [f'janus_requests_total{{status="{s}"}} {n}' for s, n in sorted(self.requests.items())]
            out += [
                "# HELP janus_request_seconds Latency of /translate requests.",
                "# TYPE janus_request_seconds histogram",
            ]
            out += self.latency.render("janus_request_seconds")
            out += ["# HELP janus_batch_texts Texts per decoded batch.", "# TYPE janus_batch_texts histogram"]
            out += self.batch_texts.render("janus_batch_texts")
            rate = self.tokens / self.decode_seconds if self.decode_seconds else 0.0
            out += [
                "# HELP janus_texts_total Texts translated.",
                "# TYPE janus_texts_total counter",
                f"janus_texts_total {self.texts}",
                "# HELP janus_generated_tokens_total Output tokens generated (EOS excluded).",
                "# TYPE janus_generated_tokens_total counter",
                f"janus_generated_tokens_total {self.tokens}",
                "# HELP janus_decode_seconds_total Time spent decoding batches.",
                "# TYPE janus_decode_seconds_total counter",
                f"janus_decode_seconds_total {self.decode_seconds:.6f}",
                "# HELP janus_tokens_per_second Generated tokens per second of decoding.",
                "# TYPE janus_tokens_per_second gauge",
                f"janus_tokens_per_second {rate:.3f}",
                "# HELP janus_queue_texts Texts admitted and not yet answered.",
                "# TYPE janus_queue_texts gauge",
                f"janus_queue_texts {self.queued}",
            ]
        return "\n".join(out) + "\n"
