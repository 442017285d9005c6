"""Dynamic micro-batching: concurrent requests with the same decoding settings become one batch.

Requests wait in one FIFO. The worker takes the oldest request and every later one with the same
settings that fits the batch's token and text budget, and decodes them together in one call of
`Translator.generate_batch` (which sorts by length, so mixed lengths pad little); each request gets
its own outputs back, in order. While requests overlap (the previous batch held more than one, or one
arrived while it decoded) the worker first gathers for up to `max_wait_ms`; a request reaching an idle
service is decoded at once, so a lone client pays no waiting time.

Admission is bounded: a request that would take the number of waiting texts over `max_queue` is
refused at once (Overloaded, HTTP 503), never queued. A request whose client went away is dropped if
it has not started; if it has, its results are discarded. `close` stops admission and finishes what
was admitted.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from janusgen.config import DecodeConfig
from janusgen.decoding.translator import Generation, Translator
from janusgen.serving.config import ServeConfig
from janusgen.serving.metrics import Metrics


class Overloaded(Exception):
    """The service cannot take the request now (queue full, shutting down or timed out): HTTP 503."""


@dataclass(eq=False)
class _Job:
    texts: list[str]
    cost: int  # source tokens, EOS included
    cfg: DecodeConfig
    future: asyncio.Future[list[Generation]]
    arrived: float = field(default_factory=time.monotonic)


class MicroBatcher:
    def __init__(self, translator: Translator, cfg: ServeConfig, metrics: Metrics) -> None:
        self.translator, self.cfg, self.metrics = translator, cfg, metrics
        self._waiting: deque[_Job] = deque()
        self._queued_texts = 0  # admitted and not yet answered (waiting or decoding)
        self._wake: asyncio.Event | None = None
        self._worker: asyncio.Task[None] | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="janus-decode")
        self._overlap = False  # did recent requests overlap? then gathering pays
        self._busy = False
        self.closing = False

    # ----------------------------------------------------------------------------------- lifecycle
    def start(self) -> None:
        self._wake = asyncio.Event()
        self._worker = asyncio.get_running_loop().create_task(self._run())

    async def close(self) -> None:
        """Refuse new requests, finish the admitted ones, stop the worker."""
        self.closing = True
        if self._wake is not None:
            self._wake.set()
        if self._worker is not None:
            await self._worker
        self._executor.shutdown(wait=True)

    @property
    def queued_texts(self) -> int:
        return self._queued_texts

    # ------------------------------------------------------------------------------------ requests
    def cost(self, texts: list[str]) -> int:
        return sum(len(ids) + 1 for ids in self.translator.tokenizer.encode([t.strip() for t in texts]))

    async def submit(self, texts: list[str], cfg: DecodeConfig) -> list[Generation]:
        """The outputs of `texts`, decoded in a batch with whatever overlaps; raises Overloaded."""
        if self.closing:
            raise Overloaded("the service is shutting down")
        if self._queued_texts + len(texts) > self.cfg.max_queue:
            raise Overloaded(
                f"the service is busy ({self._queued_texts} texts waiting, at most {self.cfg.max_queue}); "
                "retry later"
            )
        job = _Job(texts, self.cost(texts), cfg, asyncio.get_running_loop().create_future())
        self._waiting.append(job)
        self._queued_texts += len(texts)
        self.metrics.queued = self._queued_texts
        if self._busy:
            self._overlap = True
        assert self._wake is not None, "start() the batcher first"
        self._wake.set()
        try:
            return await asyncio.wait_for(asyncio.shield(job.future), self.cfg.request_timeout_s)
        except asyncio.TimeoutError as e:
            raise Overloaded(f"no answer within {self.cfg.request_timeout_s:g} s; retry later") from e
        finally:  # answered, timed out or the client went away: a job not yet started leaves the queue
            with contextlib.suppress(ValueError):
                self._waiting.remove(job)
                self._release(job)
            if not job.future.done():
                job.future.cancel()

    def _release(self, job: _Job) -> None:
        self._queued_texts -= len(job.texts)
        self.metrics.queued = self._queued_texts

    # -------------------------------------------------------------------------------------- worker
    def _take(self) -> list[_Job]:
        """The oldest job and every later one with its settings that fits the budgets (FIFO)."""
        first = self._waiting[0]
        batch, tokens, texts = [], 0, 0
        for job in list(self._waiting):
            if job.cfg != first.cfg:
                continue
            if batch and (
                tokens + job.cost > self.cfg.max_batch_tokens
                or texts + len(job.texts) > self.cfg.max_batch_texts
            ):
                break
            batch.append(job)
            tokens, texts = tokens + job.cost, texts + len(job.texts)
        for job in batch:
            self._waiting.remove(job)
        return batch

    def _full(self) -> bool:
        first = self._waiting[0]
        same = [job for job in self._waiting if job.cfg == first.cfg]
        return (
            sum(job.cost for job in same) >= self.cfg.max_batch_tokens
            or sum(len(job.texts) for job in same) >= self.cfg.max_batch_texts
        )

    async def _run(self) -> None:
        assert self._wake is not None
        loop = asyncio.get_running_loop()
        while True:
            if not self._waiting:
                if self.closing:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            if self._overlap and self.cfg.max_batch_texts > 1:  # gather while requests overlap
                deadline = self._waiting[0].arrived + self.cfg.max_wait_ms / 1000
                while not self._full() and (left := deadline - time.monotonic()) > 0:
                    self._wake.clear()
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), left)
            batch = self._take()
            self._overlap = len(batch) > 1
            jobs = [job for job in batch if not job.future.done()]  # a cancelled one needs no decoding
            texts = [t for job in jobs for t in job.texts]
            self._busy = True
            start = time.perf_counter()
            try:
                if texts:
                    outputs = await loop.run_in_executor(
                        self._executor, self.translator.generate_batch, texts, batch[0].cfg
                    )
                    seconds = time.perf_counter() - start
                    self.metrics.batch(len(texts), sum(o.tokens for o in outputs), seconds)
                    at = 0
                    for job in jobs:
                        if not job.future.done():
                            job.future.set_result(outputs[at : at + len(job.texts)])
                        at += len(job.texts)
            except Exception as e:  # a failed batch fails its requests, never the worker
                for job in jobs:
                    if not job.future.done():
                        job.future.set_exception(e)
            finally:
                self._busy = False
                for job in batch:
                    self._release(job)
