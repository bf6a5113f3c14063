"""The server's rate-limited log: a flood of one error is one line per period, saying how many
were left out."""
from __future__ import annotations

import logging
import time

from bot.server import RateLimitedLog


def test_a_flood_of_one_error_is_one_line_per_period():
    limiter = RateLimitedLog(every=0.2)
    passed = []
    for n in range(10_000):
        try:
            raise OSError(24, "Too many open files")
        except OSError:
            record = logging.LogRecord("asyncio", logging.ERROR, __file__, 1, "socket.accept() out of system resource",
                                       None, exc_info=True)
            import sys

            record.exc_info = sys.exc_info()
        if limiter.filter(record):
            passed.append(record)
    assert len(passed) == 1 and passed[0].exc_info is not None  # the first keeps its traceback
    time.sleep(0.25)
    record = logging.LogRecord("asyncio", logging.ERROR, __file__, 1, "socket.accept() out of system resource", None, None)
    assert limiter.filter(record)
    assert record.getMessage() == "socket.accept() out of system resource (9999 more like it in the last 0.2s not logged)"
    other = logging.LogRecord("asyncio", logging.ERROR, __file__, 1, "another message", None, None)
    assert limiter.filter(other)
