"""Budget spend and thresholds, as pure functions over a take of priced events.

Spend is counted for every series a budget can be set on, budget or not: per organization,
and per (organization, project), (organization, user) and (organization, model), in each
currency, per UTC day and per UTC month of the events' timestamps. A budget created in the
middle of a period therefore starts from the period's whole spend.

Spends are stored in buckets (one organization's series in one period, split in a few shards),
each with the offset up to which its partition's messages are counted in it; a bucket's key
starts with the partition, so a message replayed after a crash (offset not above the stored
one) is never counted twice. Each budget's reached thresholds are stored with the spend: a threshold
alerts once per period. Periods older than the retention (a few days, the previous month) are
forgotten, and late events for them are not counted any more (they still reach ClickHouse).
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from functools import cached_property
from typing import Protocol

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from schemas.budget import MEMBER_FIELDS, Budget

DAY_S = 86_400
SHARDS = 4
"""Buckets per organization and period: few writes a take, and no bucket too large to write
for an organization with many users."""
PERIODS = ("daily", "monthly")
SCOPE_COLUMNS: dict[str, str | None] = {"organization": None, **MEMBER_FIELDS}
"""Budget scope -> the priced event's column it is keyed on."""


@dataclass(frozen=True, order=True)
class SpendKey:
    """One series' spend in one period."""

    period: str
    start_s: int
    scope: str
    organization_id: str
    member: str
    currency: str

    @property
    def series(self) -> tuple[str, str, str, str]:
        return (self.scope, self.organization_id, self.member, self.currency)

    @property
    def end_s(self) -> int:
        return period_end(self.period, self.start_s)

    @cached_property
    def bucket(self) -> BucketKey:
        shard = zlib.crc32(f"{self.scope}|{self.member}".encode()) % SHARDS
        return BucketKey(self.period, self.start_s, self.organization_id, shard)

    @property
    def slot(self) -> tuple[str, str, str]:
        """The key within its bucket."""
        return (self.scope, self.member, self.currency)


@dataclass(frozen=True, order=True)
class BucketKey:
    """The spends of one organization in one period (a shard of its series): stored, and
    written, together, so a take writes a few records per organization, not one per series."""

    period: str
    start_s: int
    organization_id: str
    shard: int

    def text(self, partition: int) -> str:
        """The table key: ``"<partition>|<period>|<start>|<shard>|<organization>"``."""
        return f"{partition}|{self.period}|{self.start_s}|{self.shard}|{self.organization_id}"

    @classmethod
    def parse(cls, text: str) -> tuple[int, BucketKey]:
        """(partition, bucket) of a table key; ``ValueError`` if it is not one."""
        partition, period, start, shard, organization_id = text.split("|", 4)
        if period not in PERIODS:
            raise ValueError(f"unknown period {period!r}")
        return int(partition), cls(period, int(start), organization_id, int(shard))

    def key(self, slot: tuple[str, str, str]) -> SpendKey:
        scope, member, currency = slot
        return SpendKey(self.period, self.start_s, scope, self.organization_id, member, currency)


@dataclass
class Spend:
    """A series' spend in a period, and each budget's reached thresholds (budget id ->
    percentages)."""

    amount: Decimal = Decimal(0)
    reached: dict[str, list[Decimal]] = field(default_factory=dict)


@dataclass
class Bucket:
    """A bucket's spends, and the offset up to which its partition's messages are counted in it."""

    offset: int = -1
    spends: dict[tuple[str, str, str], Spend] = field(default_factory=dict)

    def dump(self) -> list[object]:
        rows = [
            [*slot, str(spend.amount), {b: [str(p) for p in ps] for b, ps in sorted(spend.reached.items())}]
            for slot, spend in sorted(self.spends.items())
        ]
        return [self.offset, rows]

    @classmethod
    def load(cls, value: Sequence[object]) -> Bucket:
        offset, rows = value
        assert isinstance(rows, list)
        spends = {
            (scope, member, currency): Spend(
                Decimal(amount), {b: [Decimal(p) for p in ps] for b, ps in reached.items()}
            )
            for scope, member, currency, amount, reached in rows
        }
        return cls(int(str(offset)), spends)


def period_start(period: str, epoch_s: int) -> int:
    day = epoch_s - epoch_s % DAY_S
    if period == "daily":
        return day
    moment = datetime.fromtimestamp(day, UTC)
    return int(datetime(moment.year, moment.month, 1, tzinfo=UTC).timestamp())


def period_end(period: str, start_s: int) -> int:
    if period == "daily":
        return start_s + DAY_S
    moment = datetime.fromtimestamp(start_s, UTC)
    year, month = (moment.year + 1, 1) if moment.month == 12 else (moment.year, moment.month + 1)
    return int(datetime(year, month, 1, tzinfo=UTC).timestamp())


def oldest_kept(period: str, newest_s: int, retention_days: int) -> int:
    """The start of the oldest period still counted, given the newest day seen."""
    if period == "daily":
        return period_start("daily", newest_s) - retention_days * DAY_S
    return period_start("monthly", period_start("monthly", newest_s) - 1)  # the previous month


def spend_contributions(priced: pa.Table, message: np.ndarray) -> list[tuple[int, SpendKey, Decimal]]:
    """What each message adds to each spend: (message, key, cost). Events without a price add
    nothing. One group-by per scope: a message adds to as many series as it has members."""
    columns = ["organization_id", *MEMBER_FIELDS.values(), "currency", "timestamp", "total_cost"]
    valid = pc.is_valid(priced.column("total_cost"))
    priced = priced.select(columns).filter(valid)  # the priced table is wide: filter what is read
    if priced.num_rows == 0:
        return []
    message = message[valid.to_numpy(zero_copy_only=False)]
    days = np.floor_divide(priced.column("timestamp").cast(pa.int64()).to_numpy(), DAY_S * 1000) * DAY_S
    base = {
        "message": pa.array(message.astype(np.int64)),
        "organization_id": priced.column("organization_id").cast(pa.string()),
        "currency": pc.fill_null(priced.column("currency").cast(pa.string()), "USD"),
        "day": pa.array(days),
        "cost": priced.column("total_cost"),
    }
    months: dict[int, int] = {}
    out: list[tuple[int, SpendKey, Decimal]] = []
    for scope, column in SCOPE_COLUMNS.items():
        member = pa.array([""] * priced.num_rows, pa.string()) if column is None else priced.column(column)
        table = pa.table({**base, "member": member.cast(pa.string())})
        if column is not None:
            table = table.filter(pc.is_valid(table.column("member")))
        grouped = table.group_by(["message", "organization_id", "member", "currency", "day"], use_threads=False)
        by_month: dict[tuple[int, str, str, str, int], Decimal] = {}
        for row in grouped.aggregate([("cost", "sum")]).to_pylist():
            number, org, name, currency, day = (
                row[c] for c in ("message", "organization_id", "member", "currency", "day")
            )
            out.append((number, SpendKey("daily", day, scope, org, name, currency), row["cost_sum"]))
            month = months.setdefault(day, period_start("monthly", day))
            slot = (number, org, name, currency, month)
            by_month[slot] = by_month.get(slot, Decimal(0)) + row["cost_sum"]
        for (number, org, name, currency, month), cost in by_month.items():
            out.append((number, SpendKey("monthly", month, scope, org, name, currency), cost))
    return out


class SpendStore(Protocol):
    def get(self, partition: int, bucket: BucketKey) -> Bucket | None: ...


@dataclass(frozen=True)
class Counted:
    """A take's buckets after counting, by (partition, bucket); ``skipped`` counts
    contributions to periods no longer kept."""

    buckets: dict[tuple[int, BucketKey], Bucket]
    newest_s: dict[int, int]
    skipped: int = 0

    def spend(self, partition: int, key: SpendKey) -> Spend:
        return self.buckets[(partition, key.bucket)].spends[key.slot]

    def series_keys(self) -> list[tuple[int, SpendKey]]:
        """Every spend of the buckets the take touched (a new budget may read an untouched one)."""
        return sorted((p, bucket.key(slot)) for (p, bucket), found in self.buckets.items() for slot in found.spends)


def count_spend(
    positions: Sequence[tuple[int, int]],
    contributions: Iterable[tuple[int, SpendKey, Decimal]],
    store: SpendStore,
    newest_s: dict[int, int],
    retention_days: int,
    firsts: dict[int, int] | None = None,
) -> Counted | None:
    """Add each message's contributions to the stored spends, once.

    With ``firsts`` (partition -> its first offset in the take), each contribution stands for
    several messages of its partition, from that first offset to its own: None when a bucket
    was counted up to the middle of them (the caller counts message by message instead).

    ``positions``: (partition, offset) of each message of the take, in consumption order;
    ``newest_s``: the start of the newest day seen per partition (this take moves it on). A
    message at or below a bucket's stored offset is counted in it already (a replay); every
    bucket the take touched is counted up to the take's last offset of its partition.
    """
    buckets: dict[tuple[int, BucketKey], Bucket] = {}
    stored_offset: dict[tuple[int, BucketKey], int] = {}
    last: dict[int, int] = {}
    for partition, offset in positions:
        last[partition] = max(last.get(partition, -1), offset)
    newest = dict(newest_s)
    items = list(contributions)
    for message, key, _ in items:
        if key.period == "daily":  # every event has a daily key: the newest day says how old a period is
            partition = positions[message][0]
            newest[partition] = max(newest.get(partition, 0), key.start_s)
    kept = {(p, period): oldest_kept(period, day, retention_days) for p, day in newest.items() for period in PERIODS}
    skipped = 0
    for message, key, cost in items:
        partition, offset = positions[message]
        if key.start_s < kept[(partition, key.period)]:
            skipped += 1
            continue
        slot = (partition, key.bucket)
        if slot not in buckets:
            stored = store.get(partition, key.bucket)
            buckets[slot] = Bucket() if stored is None else Bucket(stored.offset, dict(stored.spends))
            stored_offset[slot] = buckets[slot].offset
        if offset <= stored_offset[slot]:
            continue  # counted before this take: a replay
        if firsts is not None and firsts[partition] <= stored_offset[slot]:
            return None  # counted up to the middle of the messages this contribution sums
        spends = buckets[slot].spends
        old = spends.get(key.slot)
        spends[key.slot] = Spend(cost if old is None else old.amount + cost, {} if old is None else old.reached)
    for (partition, _), bucket in buckets.items():
        bucket.offset = max(bucket.offset, last[partition])
    return Counted(buckets, newest, skipped)


def count_take(
    positions: Sequence[tuple[int, int]],
    priced: pa.Table,
    message: np.ndarray,
    store: SpendStore,
    newest_s: dict[int, int],
    retention_days: int,
) -> Counted:
    """Count a take's priced events (row ``i`` from message ``message[i]``) into the spends.

    Summed per partition first (a message adds to tens of series: per message, the sums would
    cost more than the pricing); message by message only when a replay left a bucket counted
    up to the middle of a partition's messages (a crash between two bucket writes).
    """
    last: dict[int, int] = {}
    firsts: dict[int, int] = {}
    for number, (partition, offset) in enumerate(positions):
        last[partition] = number
        firsts.setdefault(partition, offset)
    stand_in = np.array([last[partition] for partition, _ in positions], dtype=np.int64)
    summed = spend_contributions(priced, stand_in[message])
    counted = count_spend(positions, summed, store, newest_s, retention_days, firsts)
    if counted is None:
        counted = count_spend(positions, spend_contributions(priced, message), store, newest_s, retention_days)
    assert counted is not None
    return counted


@dataclass(frozen=True)
class Crossing:
    budget: Budget
    key: SpendKey
    partition: int
    percent: Decimal
    spend: Decimal


class BudgetBook:
    """The budgets known to a worker, by the spend series and period they read."""

    def __init__(self, budgets: Iterable[Budget] = (), version: int = -1) -> None:
        self.version = version
        self.budgets = list(budgets)
        self._by_series: dict[tuple[str, tuple[str, str, str, str]], list[Budget]] = {}
        for budget in self.budgets:
            self._by_series.setdefault((budget.period, budget.series), []).append(budget)

    def on(self, key: SpendKey) -> list[Budget]:
        return self._by_series.get((key.period, key.series), [])


def crossings(counted: Counted, book: BudgetBook) -> list[Crossing]:
    """Thresholds reached in this take and not reached before in the period, lowest first."""
    found = []
    for partition, key in counted.series_keys():
        budgets = book.on(key)
        if not budgets:
            continue
        spend = counted.spend(partition, key)
        for budget in budgets:
            reached = set(spend.reached.get(budget.id, []))
            for percent in budget.thresholds:
                if percent not in reached and spend.amount * 100 >= budget.amount * percent:
                    found.append(Crossing(budget, key, partition, percent, spend.amount))
    return found


def mark_reached(counted: Counted, found: Iterable[Crossing]) -> None:
    for crossing in found:
        spend = counted.spend(crossing.partition, crossing.key)
        spend.reached = {
            **spend.reached,
            crossing.budget.id: [*spend.reached.get(crossing.budget.id, []), crossing.percent],
        }


def severity(percent: Decimal, budget: Budget) -> str:
    if percent >= 100:
        return "critical" if budget.enforcement == "hard" else "high"
    return "medium" if percent >= 80 else "low"


def budget_alert(crossing: Crossing, now: datetime) -> dict[str, object]:
    """The ``budget.threshold`` alert record (produced to ``alerts``, stored in ``alerts``).

    Its id names the budget, the period and the threshold: raised again after a crash, it is
    the same alert."""
    budget, key = crossing.budget, crossing.key
    start = datetime.fromtimestamp(key.start_s, UTC)
    end = datetime.fromtimestamp(key.end_s, UTC)
    limit = budget.amount * crossing.percent / 100
    used = crossing.spend * 100 / budget.amount
    scope = budget.organization_id + (f" {budget.scope} {budget.member}" if budget.member else "")
    return {
        "alert_id": f"budget.threshold|{budget.id}|{key.start_s}|{crossing.percent}",
        "type": "budget.threshold",
        "organization_id": budget.organization_id,
        "dimension": budget.scope,
        "project_id": budget.project_id,
        "user_id": budget.user_id,
        "model": budget.model,
        "currency": budget.currency,
        "window_start": _iso(start),
        "window_end": _iso(end),
        "size_seconds": key.end_s - key.start_s,
        "actual_cost": str(crossing.spend),
        "expected_cost": str(budget.amount),
        "impact": str(crossing.spend - budget.amount),
        "score": float(round(used, 4)),
        "method": "budget",
        "threshold": float(crossing.percent),
        "severity": severity(crossing.percent, budget),
        "direction": "above",
        "windows": 1,
        "budget_id": budget.id,
        "budget_name": budget.name,
        "period": budget.period,
        "enforcement": budget.enforcement,
        "threshold_amount": str(limit),
        "message": (
            f"budget {budget.name!r} ({scope}, {budget.period}): {budget.currency} {crossing.spend:.2f} spent, "
            f"{used:.1f}% of {budget.amount:.2f}; the {crossing.percent}% threshold is reached"
        ),
        "created_at": _iso(now),
    }


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
