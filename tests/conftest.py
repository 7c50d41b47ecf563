"""Shared helpers: hypothesis profiles, and reading a packed batch back into sequences."""

from __future__ import annotations

import os

import numpy as np
from hypothesis import HealthCheck, settings

settings.register_profile(
    "default", deadline=None, suppress_health_check=[HealthCheck.too_slow], max_examples=150
)
settings.register_profile(
    "ci", deadline=None, suppress_health_check=[HealthCheck.too_slow], max_examples=300
)
settings.load_profile("ci" if os.environ.get("CI") else "default")


def segments_of(batch):
    """Yield (row, column, length, source, chunk, start) for every segment, walking the row
    arrays themselves (not the per-segment metadata), so the two can be checked against
    each other."""
    segment = 0
    for row in range(batch.num_rows):
        ids = batch.segment_ids[row]
        column = 0
        while column < batch.max_length and ids[column] != 0:
            end = column
            while end < batch.max_length and ids[end] == ids[column]:
                end += 1
            source, chunk = batch.source_index[segment]
            yield row, column, end - column, int(source), int(chunk), int(batch.source_start[segment])
            segment += 1
            column = end


def rebuild_sources(batch, count):
    """Token lists per input sequence, pieced together from the packed rows in chunk order."""
    pieces = {i: [] for i in range(count)}
    for row, column, length, source, chunk, start in segments_of(batch):
        pieces[source].append((chunk, start, batch.input_ids[row, column : column + length]))
    out = {}
    for source, parts in pieces.items():
        parts.sort(key=lambda p: p[0])
        out[source] = (
            parts[0][1] if parts else None,
            np.concatenate([p[2] for p in parts]) if parts else np.zeros(0, np.int64),
        )
    return out
