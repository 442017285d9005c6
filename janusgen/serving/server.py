"""The HTTP service: POST /translate, GET /health, GET /metrics, on Starlette and uvicorn.

    POST /translate  {"texts": ["En el principio ..."], "mode": "speculative"}
                  -> {"translations": ["In the beginning ..."], "scores": [-0.41], "tokens": [9]}

Settings are those of `janus generate`, the fields of DecodeConfig (`request_settings`), checked like
the CLI's; a bad request is answered 400 with a message naming the field, an overloaded service 503 with
Retry-After. The model is loaded once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import torch
import uvicorn
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from janusgen.config import DecodeConfig, decode_config, described_fields, option_of
from janusgen.decoding.translator import Translator
from janusgen.errors import JanusError
from janusgen.serving.batcher import MicroBatcher, Overloaded
from janusgen.serving.config import ServeConfig
from janusgen.serving.metrics import Metrics


def request_settings() -> tuple[str, ...]:
    """The decoding settings a request may give: the DecodeConfig fields a request may set (max_tokens
    is the service's own: --max-batch-tokens)."""
    return tuple(f.name for f in described_fields(DecodeConfig) if option_of(f).request)


def request_limits(cfg: ServeConfig) -> dict[str, int]:
    """Setting -> the most this service allows of it, for the DecodeConfig fields that name their
    ServeConfig cap (beam and length_beam: --max-beam; iterations: --max-iterations)."""
    return {
        f.name: getattr(cfg, option_of(f).serve_limit)
        for f in described_fields(DecodeConfig)
        if option_of(f).serve_limit is not None
    }


class BadRequest(Exception):
    """A request the service will not decode: HTTP 400 with this message."""


class BodyTimeout(Exception):
    """A client that stopped sending its body: HTTP 408, and the connection is closed."""


async def read_body(request: Request, cfg: ServeConfig) -> bytes:
    """The request's body, counted as it arrives (chunked or not): refused as soon as it passes
    `max_body_bytes`, without reading the rest, and given up after `body_timeout_s` (a client that stops
    mid-body must not hold its connection, and its share of memory, for ever)."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.strip().isdigit():
            raise BadRequest(f"Content-Length {declared!r} is not a number of bytes")
        if int(declared) > cfg.max_body_bytes:
            raise BadRequest(f"request body of {int(declared)} bytes; at most {cfg.max_body_bytes}")
    chunks: list[bytes] = []
    size = 0

    async def receive_all() -> None:
        nonlocal size
        async for chunk in request.stream():
            size += len(chunk)
            if size > cfg.max_body_bytes:
                raise BadRequest(f"request body over {cfg.max_body_bytes} bytes")
            chunks.append(chunk)

    try:
        await asyncio.wait_for(receive_all(), timeout=cfg.body_timeout_s)
    except asyncio.TimeoutError:
        raise BodyTimeout(
            f"the request body did not arrive within {cfg.body_timeout_s:g} s ({size} bytes came)"
        ) from None
    except ClientDisconnect:
        raise BodyTimeout("the client went away before sending its whole body") from None
    return b"".join(chunks)


def parse_request(body: bytes, cfg: ServeConfig) -> tuple[list[str], DecodeConfig]:
    """The texts and decoding settings of a /translate body; raises BadRequest naming the problem."""
    if len(body) > cfg.max_body_bytes:
        raise BadRequest(f"request body of {len(body)} bytes; at most {cfg.max_body_bytes}")
    try:
        request = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise BadRequest(f"the body is not JSON: {e}") from e
    except RecursionError:
        raise BadRequest("the body is JSON nested too deeply to read") from None
    if not isinstance(request, dict):
        raise BadRequest('the body must be a JSON object such as {"texts": ["..."]}')
    known = request_settings()
    unknown = sorted(set(request) - {"texts", *known})
    if unknown:
        raise BadRequest(f"unknown field(s): {', '.join(unknown)}; known: texts, {', '.join(known)}")
    texts = request.get("texts")
    if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
        raise BadRequest('"texts" must be a list of strings')
    if not 1 <= len(texts) <= cfg.max_texts:
        raise BadRequest(f'"texts" holds {len(texts)} texts; give between 1 and {cfg.max_texts}')
    long = [i for i, t in enumerate(texts) if len(t) > cfg.max_chars]
    if long:
        raise BadRequest(
            f"text {long[0]} has {len(texts[long[0]])} characters; at most {cfg.max_chars} per text"
        )
    settings = {k: v for k, v in request.items() if k != "texts"}
    for name, most in request_limits(cfg).items():
        value = settings.get(name)
        if isinstance(value, int) and not isinstance(value, bool) and value > most:
            raise BadRequest(f'"{name}" {value}: this service allows at most {most}')
    try:
        decode = decode_config(**settings, max_tokens=cfg.max_batch_tokens)
    except (JanusError, TypeError) as e:  # messages name the option as the CLI spells it
        raise BadRequest(str(e)) from e
    return texts, decode


def build_app(translator: Translator, cfg: ServeConfig) -> Starlette:
    metrics = Metrics()
    batcher = MicroBatcher(translator, cfg, metrics)

    async def translate(request: Request) -> Response:
        start = time.perf_counter()
        status = 200
        try:
            texts, decode = parse_request(await read_body(request, cfg), cfg)
            try:
                translator.check_views(decode)  # NAR of an `ar` model, AR of a `cmlm` one
            except JanusError as e:
                raise BadRequest(str(e)) from None
            outputs = await batcher.submit(texts, decode)
            return JSONResponse(
                {
                    "translations": [o.text for o in outputs],
                    "scores": [o.score for o in outputs],
                    "tokens": [o.tokens for o in outputs],
                }
            )
        except BadRequest as e:
            status = 400
            # the rest of a body cut at the limit is never read: the connection cannot serve another request
            return JSONResponse({"error": str(e)}, status_code=400, headers={"Connection": "close"})
        except BodyTimeout as e:
            status = 408
            return JSONResponse({"error": str(e)}, status_code=408, headers={"Connection": "close"})
        except Overloaded as e:
            status = 503
            return JSONResponse({"error": str(e)}, status_code=503, headers={"Retry-After": "1"})
        except Exception as e:  # a decoding failure: the worker goes on
            status = 500
            return JSONResponse({"error": f"internal error: {type(e).__name__}: {e}"}, status_code=500)
        finally:
            metrics.request(status, time.perf_counter() - start)

    async def health(request: Request) -> Response:
        body = {"status": "shutting down" if batcher.closing else "ok", "queued_texts": batcher.queued_texts}
        return JSONResponse(body, status_code=503 if batcher.closing else 200)

    async def prometheus(request: Request) -> Response:
        return PlainTextResponse(metrics.render(), media_type="text/plain; version=0.0.4")

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        batcher.start()
        yield
        await batcher.close()  # uvicorn has let in-flight requests finish; finish what is queued

    app = Starlette(
        routes=[
            Route("/translate", translate, methods=["POST"]),
            Route("/health", health, methods=["GET"]),
            Route("/metrics", prometheus, methods=["GET"]),
        ],
        lifespan=lifespan,
    )
    app.state.batcher, app.state.metrics = batcher, metrics
    return app


def _uvicorn_config(translator: Translator, cfg: ServeConfig, **options: Any) -> uvicorn.Config:
    return uvicorn.Config(
        build_app(translator, cfg),
        host=cfg.host,
        port=cfg.port,
        log_level="warning",
        lifespan="on",
        timeout_graceful_shutdown=int(cfg.graceful_timeout_s),
        **options,
    )


def run_server(translator: Translator, cfg: ServeConfig) -> None:
    """Serve until SIGINT / SIGTERM; then stop accepting, finish in-flight requests and return. The
    process decodes with `cfg.decode_threads()` threads (the decoding thread inherits the count)."""
    torch.set_num_threads(cfg.decode_threads())
    print(
        f"janus serve: listening on http://{cfg.host}:{cfg.port} (POST /translate, GET /health, "
        f"GET /metrics), {torch.get_num_threads()} decoding thread(s)"
    )
    uvicorn.Server(_uvicorn_config(translator, cfg)).run()


@contextlib.contextmanager
def background_server(translator: Translator, cfg: ServeConfig) -> Iterator[str]:
    """Run the service in a thread on a free loopback port (cfg.host, port 0 = any); yields its URL and
    shuts it down gracefully on exit. For tests and benchmarks."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((cfg.host, cfg.port))
    server = uvicorn.Server(_uvicorn_config(translator, cfg))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the server did not start")
            time.sleep(0.01)
        host, port = sock.getsockname()[:2]
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=cfg.graceful_timeout_s + 10)
        sock.close()
