"""How soon a busy HTTP queue frees a place: the Retry-After of a 429, from how fast the queue drains now.

A place frees whenever a job ends and the next queued one starts. The estimate takes the
measured speed of recent jobs (wall seconds per audio second, on every replica sharing
the store) and applies it to what runs and waits now; bench/bench_retry_after.py compares
it with the real wait.
"""

from __future__ import annotations

import heapq
import math
import statistics
from datetime import timedelta

DRAIN_WINDOW = timedelta(hours=1)   # recent jobs whose speed predicts the running ones'
DRAIN_SAMPLES = 20
NO_DRAIN_RETRY = 5           # Retry-After with nothing measured yet: soon, and cheap to refuse again
MIN_REMAINING = 1.0          # a running job past its predicted end is taken to end within a second
MAX_RETRY = 600


def drain_retry_after(speeds: list[float], running: list[tuple[float, float]], waiting: list[float],
                      ahead: int = 1) -> int:
    """Seconds until `ahead` places in the queue are likely free, from how fast it drains now.

    A place frees whenever a job ends and the next queued one starts. Each job's time is
    its audio length times the measured speed of recent jobs (wall seconds per audio
    second, the median of the last ones on every replica); the running jobs end at that
    time minus what they have run, and each slot then takes the next waiting job.

    Args:
        speeds: wall seconds per audio second of recent done jobs.
        running: (seconds run so far, audio seconds) of each running job.
        waiting: audio seconds of each queued job, first to run first.
        ahead: places that must free up.
    """
    if not speeds or not running:
        return NO_DRAIN_RETRY  # nothing measured, or nothing that will end: soon, and cheap to refuse again
    speed = statistics.median(speeds)
    ends = [max(MIN_REMAINING, speed * audio - ran) for ran, audio in running]
    heapq.heapify(ends)
    typical = statistics.median([a for _, a in running if a] or [1.0])
    t = 0.0
    for i in range(ahead):
        t = heapq.heappop(ends)
        nxt = waiting[i] if i < len(waiting) and waiting[i] else typical
        heapq.heappush(ends, t + speed * nxt)
    return int(min(MAX_RETRY, max(1, math.ceil(t))))
