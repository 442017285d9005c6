"""`janus serve` with a real server on 127.0.0.1 and a real HTTP client (httpx)."""

from __future__ import annotations

import asyncio
import os
import threading
import time

import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("starlette")
pytest.importorskip("uvicorn")

from janusgen.cli import main  # noqa: E402
from janusgen.decoding.translator import Translator  # noqa: E402
from janusgen.errors import JanusError  # noqa: E402
from janusgen.serving.config import ServeConfig  # noqa: E402
from janusgen.serving.server import background_server  # noqa: E402

TEXTS = ["casa perro", "sol luna mar rio", "agua", "fuego tierra cielo dia noche", "flor arbol pan", "monte"]


@pytest.fixture(scope="module")
def translator(toy_checkpoint):
    return Translator.load(toy_checkpoint, dtype="float32")


def _config(**changes) -> ServeConfig:
    return ServeConfig(host="127.0.0.1", port=0, **changes)


class Gate:
    """Holds every batch until opened: makes 'a request is in flight' a state a test can set up."""

    def __init__(self, translator: Translator, monkeypatch: pytest.MonkeyPatch) -> None:
        self.open_event, self.entered = threading.Event(), threading.Event()
        inner = translator.generate_batch

        def held(texts, cfg, stats=None):
            self.entered.set()
            assert self.open_event.wait(30)
            return inner(texts, cfg, stats)

        monkeypatch.setattr(translator, "generate_batch", held)

    def open(self) -> None:
        self.open_event.set()


@pytest.mark.parametrize(
    "settings",
    [
        {"mode": "ar", "beam": 1},
        {"mode": "ar", "beam": 3},
        {"mode": "nar", "iterations": 4},
        {"mode": "speculative"},
    ],
)
def test_translate_equals_a_direct_call(translator, settings):
    with background_server(translator, _config()) as url:
        reply = httpx.post(f"{url}/translate", json={"texts": TEXTS, **settings}, timeout=60)
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["translations"] == translator.generate(TEXTS, **settings)
    assert len(body["scores"]) == len(body["tokens"]) == len(TEXTS)


def test_concurrent_requests_share_batches_and_get_their_own_results(translator):
    expected = dict(zip(TEXTS, translator.generate(TEXTS, mode="ar", beam=1), strict=True))

    async def clients(url: str) -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=url, timeout=60) as client:
            return await asyncio.gather(
                *(client.post("/translate", json={"texts": [t], "mode": "ar", "beam": 1}) for t in TEXTS * 4)
            )

    with background_server(translator, _config(max_wait_ms=50)) as url:
        replies = asyncio.run(clients(url))
        metrics = httpx.get(f"{url}/metrics").text
    assert [r.json()["translations"] for r in replies] == [[expected[t]] for t in TEXTS * 4]
    batches = int(
        next(line.split()[1] for line in metrics.splitlines() if line.startswith("janus_batch_texts_count"))
    )
    assert batches < len(TEXTS) * 4  # requests were gathered into shared batches
    assert 'janus_requests_total{status="200"} 24' in metrics
    assert "janus_request_seconds_bucket" in metrics and "janus_tokens_per_second" in metrics


def test_without_micro_batching_every_batch_is_one_request(translator):
    async def clients(url: str) -> None:
        async with httpx.AsyncClient(base_url=url, timeout=60) as client:
            await asyncio.gather(*(client.post("/translate", json={"texts": [t]}) for t in TEXTS))

    with background_server(translator, _config(max_batch_texts=1)) as url:
        asyncio.run(clients(url))
        metrics = httpx.get(f"{url}/metrics").text
    assert 'janus_batch_texts_bucket{le="1"} 6' in metrics and "janus_batch_texts_count 6" in metrics


def test_health_and_metrics(translator):
    with background_server(translator, _config()) as url:
        health = httpx.get(f"{url}/health")
        metrics = httpx.get(f"{url}/metrics")
    assert health.status_code == 200 and health.json()["status"] == "ok"
    assert metrics.headers["content-type"].startswith("text/plain")
    assert "# TYPE janus_request_seconds histogram" in metrics.text


@pytest.mark.parametrize(
    "body, message",
    [
        (b"not json", "not JSON"),
        (b"[1, 2]", "JSON object"),
        (b'{"text": "casa"}', "unknown field(s): text"),
        (b'{"texts": "casa"}', "list of strings"),
        (b'{"texts": []}', "between 1 and 4"),
        (b'{"texts": ["a", "b", "c", "d", "e"]}', "between 1 and 4"),
        (b'{"texts": ["' + b"x" * 50 + b'"]}', "at most 40 per text"),
        (b'{"texts": ["casa"], "mode": "fast"}', "--mode 'fast'"),
        (b'{"texts": ["casa"], "beam": 0}', "--beam 0"),
        (b'{"texts": ["casa"], "beam": 99}', "at most 16"),
        (b'{"texts": ["casa"], "iterations": 51}', "at most 50"),
        (b'{"texts": ["casa"], "length_offsets": "0"}', "list of integers"),
        (b'{"texts": ["casa"], "max_len_a": -1}', "--max-len-a"),
        (b'{"texts": ["casa"], "collapse_repeats": "yes"}', "--collapse-repeats 'yes'"),
        (b'{"texts": ["' + b"casa " * 60 + b'"]}', "bytes"),
    ],
)
def test_bad_requests_are_400_with_a_clear_message(translator, body, message):
    cfg = _config(max_texts=4, max_chars=40, max_body_bytes=200)
    with background_server(translator, cfg) as url:
        reply = httpx.post(f"{url}/translate", content=body, headers={"content-type": "application/json"})
        after = httpx.post(f"{url}/translate", json={"texts": ["casa"]})
    assert reply.status_code == 400
    assert message in reply.json()["error"]
    assert after.status_code == 200  # the service goes on


def test_overload_is_503_and_the_queue_stays_bounded(translator, monkeypatch):
    gate = Gate(translator, monkeypatch)
    with background_server(translator, _config(max_queue=2, max_texts=2)) as url:
        first: list[httpx.Response] = []
        thread = threading.Thread(
            target=lambda: first.append(
                httpx.post(f"{url}/translate", json={"texts": ["casa", "sol"]}, timeout=60)
            )
        )
        thread.start()
        assert gate.entered.wait(30)  # the first request holds the whole queue
        refused = httpx.post(f"{url}/translate", json={"texts": ["agua"]})
        assert refused.status_code == 503 and "busy" in refused.json()["error"]
        assert refused.headers["retry-after"] == "1"
        gate.open()
        thread.join(60)
        assert first[0].status_code == 200
        assert httpx.post(f"{url}/translate", json={"texts": ["agua"]}).status_code == 200


def test_a_client_that_goes_away_does_not_break_the_worker(translator, monkeypatch):
    gate = Gate(translator, monkeypatch)
    with background_server(translator, _config()) as url:
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(f"{url}/translate", json={"texts": ["casa"]}, timeout=0.5)
        with pytest.raises(httpx.ReadTimeout):  # queued behind the first, then abandoned
            httpx.post(f"{url}/translate", json={"texts": ["sol"]}, timeout=0.5)
        gate.open()
        reply = httpx.post(f"{url}/translate", json={"texts": ["agua"]}, timeout=60)
        assert reply.status_code == 200
        assert reply.json()["translations"] == translator.generate(["agua"])


def test_graceful_shutdown_finishes_in_flight_requests(translator, monkeypatch):
    gate = Gate(translator, monkeypatch)
    server = background_server(translator, _config())
    url = server.__enter__()
    replies: list[httpx.Response] = []
    thread = threading.Thread(
        target=lambda: replies.append(httpx.post(f"{url}/translate", json={"texts": ["casa"]}, timeout=60))
    )
    thread.start()
    assert gate.entered.wait(30)
    threading.Timer(0.5, gate.open).start()
    start = time.monotonic()
    server.__exit__(None, None, None)  # asks the server to stop while the request is in flight
    thread.join(60)
    assert replies and replies[0].status_code == 200
    assert replies[0].json()["translations"] == translator.generate(["casa"])
    assert time.monotonic() - start >= 0.4  # it waited for the request
    with pytest.raises(httpx.ConnectError):  # and then stopped
        httpx.get(f"{url}/health", timeout=2)


def test_serve_options_are_checked():
    with pytest.raises(JanusError, match="--max-wait-ms"):
        ServeConfig(max_wait_ms=-1)
    with pytest.raises(JanusError, match="--max-queue"):
        ServeConfig(max_queue=0)
    with pytest.raises(JanusError, match="--max-texts 64 exceeds --max-queue 8"):
        ServeConfig(max_queue=8)
    with pytest.raises(JanusError, match="--threads -1"):
        ServeConfig(threads=-1)


def test_decoding_leaves_a_core_to_the_event_loop(monkeypatch):
    """Automatic threads: one less than the usable cores, at least one; an explicit count is kept."""
    for cores, threads in (({0, 1, 2, 3}, 3), ({0, 1}, 1), ({5}, 1)):
        monkeypatch.setattr(os, "sched_getaffinity", lambda pid, cores=cores: cores)
        assert ServeConfig().decode_threads() == threads
    assert ServeConfig(threads=2).decode_threads() == 2


def test_serve_cli_errors_exit_2(tmp_path, capsys):
    assert main(["serve", "--checkpoint", str(tmp_path / "missing"), "--max-batch-tokens", "0"]) == 2
    assert "--max-batch-tokens 0" in capsys.readouterr().err
    assert main(["serve", "--checkpoint", str(tmp_path / "missing")]) == 2
    assert "missing" in capsys.readouterr().err


# ------------------------------------------------------------------ bodies that never end


def _raw_post(url: str, head: bytes, body_parts: list[bytes], wait_s: float = 30) -> bytes:
    """Send a POST /translate by hand (headers `head`, then `body_parts`, never more) and return what
    the server answers, until it closes the connection or `wait_s` pass."""
    import socket

    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=wait_s) as sock:
        sock.sendall(
            b"POST /translate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" + head + b"\r\n"
        )
        for part in body_parts:
            try:
                sock.sendall(part)
            except OSError:  # the server answered and closed while the body was still coming
                break
        reply = b""
        try:
            while chunk := sock.recv(65536):
                reply += chunk
        except (TimeoutError, ConnectionResetError):
            pass
    return reply


def test_a_chunked_body_is_cut_at_the_limit_while_it_is_read(translator):
    """a chunked body was read whole (50 MB) before the 1 MB limit applied."""
    chunk = b"x" * 10_000
    parts = [b"%x\r\n%s\r\n" % (len(chunk), chunk)] * 2000  # 20 MB, never terminated
    with background_server(translator, _config(max_body_bytes=50_000)) as url:
        reply = _raw_post(url, b"Transfer-Encoding: chunked\r\n", parts)
        assert reply.startswith(b"HTTP/1.1 400"), reply[:200]
        assert b"50000" in reply
        assert httpx.post(f"{url}/translate", json={"texts": ["casa"]}).status_code == 200


def test_a_client_that_stops_mid_body_is_answered_408_and_let_go(translator):
    """a client that stopped mid-body held its connection open indefinitely."""
    with background_server(translator, _config(body_timeout_s=0.5)) as url:
        reply = _raw_post(url, b"Content-Length: 100\r\n", [b'{"texts": ['])
        assert reply.startswith(b"HTTP/1.1 408"), reply[:200]
        assert b"connection: close" in reply.lower()
        assert httpx.post(f"{url}/translate", json={"texts": ["casa"]}).status_code == 200


def test_a_deeply_nested_body_is_400_not_500(translator):
    """100,000 nested brackets answered 500 (a RecursionError)."""
    with background_server(translator, _config(max_body_bytes=300_000)) as url:
        reply = httpx.post(f"{url}/translate", content=b"[" * 100_000 + b"]" * 100_000)
    assert reply.status_code == 400 and "nested" in reply.json()["error"]


def test_a_bad_content_length_is_400(translator):
    with background_server(translator, _config()) as url:
        reply = _raw_post(url, b"Content-Length: 12abc\r\n", [b"{}"], wait_s=10)
    assert reply.startswith(b"HTTP/1.1 400"), reply[:200]
