"""Checkpoints written in the background, so that training goes on while files are hashed and synced.

The trainer hands over a finished job (a copy of the weights and optimizer state already taken, so the
training may change its own tensors at once); one thread runs the jobs in order, and the next
`submit` or `wait` re-raises a job's failure in the training thread. Every write stays atomic
(janusgen.fileio), so a kill while a job runs leaves the previous checkpoint as it was.
"""

from __future__ import annotations

import threading
from collections.abc import Callable


class CheckpointWriter:
    def __init__(self) -> None:
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def submit(self, job: Callable[[], None]) -> None:
        """Run `job` in the background, after the previous job has finished."""
        self.wait()
        self._thread = threading.Thread(target=self._run, args=(job,), name="janus-checkpoint", daemon=False)
        self._thread.start()

    def _run(self, job: Callable[[], None]) -> None:
        try:
            job()
        except BaseException as e:  # noqa: BLE001 (handed to the training thread by wait())
            self._error = e

    def wait(self) -> None:
        """Block until the running job (if any) is done; raise its exception, if it failed."""
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._error is not None:
            error, self._error = self._error, None
            raise error
