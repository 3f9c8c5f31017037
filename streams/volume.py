"""Monthly token volume per organization and model: what graduated tiers are priced against.

Every valid event adds its ``total_tokens`` to the volume of (organization, provider, model
name, calendar month of its timestamp in UTC), whatever priced it, so a tiered rule added in
the middle of a month starts from the month's true volume. Within a take the events count in
the order they were consumed (partition order: one organization's events share a partition).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from schemas.columns import codes, dictionary_array, unique_rows

VolumeKey = tuple[str, str, str, str]
"""(organization_id, provider, model in lower case, "YYYY-MM")."""


class VolumeStore(Protocol):
    """Where monthly volumes live between takes (the worker: a changelog-backed Faust table)."""

    def get(self, key: VolumeKey) -> int: ...

    def counted(self, key: VolumeKey, message: int) -> bool:
        """Whether message number ``message`` of the take is in the key's volume already: a
        replay after a crash, whose tokens must not count twice."""
        ...

    def set(self, key: VolumeKey, total: int, message: int) -> None:
        """``total`` is the key's new volume after the take; ``message`` is the number (in the
        take) of the last message that added to it (the worker writes where it came from)."""
        ...


@dataclass
class DictVolumes:
    """Volumes in a dict: tests, and recomputations that start from known volumes."""

    totals: dict[VolumeKey, int] = field(default_factory=dict)

    def get(self, key: VolumeKey) -> int:
        return self.totals.get(key, 0)

    def counted(self, key: VolumeKey, message: int) -> bool:
        return False

    def set(self, key: VolumeKey, total: int, message: int) -> None:
        self.totals[key] = total


def key_text(key: VolumeKey) -> str:
    """The key as a table key (JSON: no separator can clash with an id)."""
    return json.dumps(list(key), separators=(",", ":"))


def month_of(timestamp_ms: np.ndarray) -> np.ndarray:
    """Months since 1970-01 (UTC) of epoch-millisecond timestamps."""
    return timestamp_ms.astype("datetime64[ms]").astype("datetime64[M]").astype(np.int64)


def month_text(month: int) -> str:
    return f"{1970 + month // 12:04d}-{month % 12 + 1:02d}"


@dataclass(frozen=True)
class Volumes:
    """The volume key of every row of a usage table, and its tokens."""

    keys: list[VolumeKey]
    index: np.ndarray
    """Per row: its key's position in ``keys``."""
    tokens: np.ndarray

    @classmethod
    def of(cls, usage: pa.Table) -> Volumes:
        size = usage.num_rows
        if size == 0:
            return cls([], np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64))
        column = usage.column
        parts = []
        texts = []
        for name in ("organization_id", "provider", "model"):
            encoded = dictionary_array(column(name))
            dictionary = encoded.dictionary
            if name == "model":  # as rules match models: "GPT-4o" and "gpt-4o" share a volume
                dictionary = pc.utf8_lower(dictionary)
            used, inverse = np.unique(np.asarray(dictionary.to_pylist(), dtype=object), return_inverse=True)
            parts.append(inverse.reshape(-1)[codes(encoded.indices)].astype(np.int64))
            texts.append(used.tolist())
        months = month_of(column("timestamp").cast(pa.int64()).to_numpy())
        parts.append(months - int(months.min()))
        combos, inverse = unique_rows(parts)
        first = int(months.min())
        keys = [(texts[0][o], texts[1][p], texts[2][m], month_text(first + slot)) for o, p, m, slot in combos.tolist()]
        return cls(keys, inverse.astype(np.int64), column("total_tokens").to_numpy().astype(np.int64))

    def before(self, start: Mapping[VolumeKey, int], counted: np.ndarray | None = None) -> np.ndarray:
        """Per row: the volume of its key before it (``start`` plus earlier counted rows of the
        take). ``counted`` False marks rows whose tokens are in ``start`` already (a replay)."""
        if not len(self.index):
            return np.zeros(0, dtype=np.int64)
        tokens = self._counted_tokens(counted)
        order = np.argsort(self.index, kind="stable")
        sorted_index = self.index[order]
        sorted_tokens = tokens[order]  # a take's tokens: far below int64's range
        running = np.cumsum(sorted_tokens) - sorted_tokens
        key_start = np.searchsorted(sorted_index, np.arange(len(self.keys)))
        within = np.empty(len(self.index), dtype=np.int64)
        within[order] = running - running[key_start][sorted_index]
        base = [int(start.get(k, 0)) for k in self.keys]
        if max(base) < 2**62:
            result: np.ndarray = within + np.array(base, dtype=np.int64)[self.index]
        else:
            result = within.astype(object) + np.array(base, dtype=object)[self.index]
        return result

    def last_rows(self, counted: np.ndarray | None = None) -> dict[int, int]:
        """Per key that has counted rows: its last counted row in the table."""
        rows = np.arange(len(self.index)) if counted is None else np.flatnonzero(counted)
        last = np.full(len(self.keys), -1, dtype=np.int64)
        np.maximum.at(last, self.index[rows], rows)
        return {key: int(row) for key, row in enumerate(last.tolist()) if row >= 0}

    def after(self, start: Mapping[VolumeKey, int], counted: np.ndarray | None = None) -> dict[VolumeKey, int]:
        """Each key's volume once the take's counted rows are added."""
        tokens = self._counted_tokens(counted)
        totals: dict[VolumeKey, int] = {k: int(start.get(k, 0)) for k in self.keys}
        added = np.zeros(len(self.keys), dtype=np.int64)
        np.add.at(added, self.index, tokens)
        for key, amount in zip(self.keys, added.tolist(), strict=True):
            totals[key] += int(amount)
        return totals

    def fresh(self, message: np.ndarray, volumes: VolumeStore) -> np.ndarray:
        """Rows whose tokens are not yet in their key's volume: a replayed message (after a
        crash between the volume's write and the offset commit) is priced again but counts once."""
        width = int(message.max()) + 1
        pairs, inverse = np.unique(self.index * width + message, return_inverse=True)  # (key, message)
        replayed = np.array(
            [volumes.counted(self.keys[pair // width], pair % width) for pair in pairs.tolist()], dtype=bool
        )
        return ~replayed[inverse.reshape(-1)]

    def _counted_tokens(self, counted: np.ndarray | None) -> np.ndarray:
        return self.tokens if counted is None else np.where(counted, self.tokens, 0)


def count_volumes(usage: pa.Table, message: np.ndarray, volumes: VolumeStore) -> np.ndarray:
    """Count a take's tokens into ``volumes``; per row, the volume of its key before it.

    ``message``: per row, the number of the message (in the take) it came from. Rows of a
    message the store has counted already are priced at the volume as it stands and add nothing.
    """
    tally = Volumes.of(usage)
    start = {key: volumes.get(key) for key in tally.keys}
    fresh = tally.fresh(message, volumes) if len(message) else None
    totals = tally.after(start, fresh)
    for key_index, row in tally.last_rows(fresh).items():
        key = tally.keys[key_index]
        volumes.set(key, totals[key], int(message[row]))
    return tally.before(start, fresh)
