"""Progress bars follow the `janusgen` logger: `janus --quiet` (the logger set above INFO) hides them along
with the other progress messages. A program that never sets the logger's level keeps them."""

from __future__ import annotations

import logging


def quiet() -> bool:
    """True when the `janusgen` logger was set to show less than INFO (`janus --quiet`)."""
    return logging.getLogger("janusgen").level > logging.INFO
