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
from functools import cached_property, lru_cache
from typing import Any, Protocol

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from schemas.budget import MEMBER_FIELDS, Budget
from schemas.columns import iso_millis

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
        return BucketKey(self.period, self.start_s, self.organization_id, shard_of(self.scope, self.member))

    @property
    def slot(self) -> tuple[str, str, str]:
        """The key within its bucket."""
        return (self.scope, self.member, self.currency)


@lru_cache(maxsize=65_536)
def shard_of(scope: str, member: str) -> int:
    return zlib.crc32(f"{scope}|{member}".encode()) % SHARDS


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


Contribution = tuple[int, str, int, str, str, str, str, Decimal]
"""What one message adds to one spend: (message, period, period start, scope, organization,
member, currency, cost). Plain tuples: a take has one per series and period."""


def spend_contributions(priced: pa.Table, message: np.ndarray) -> list[Contribution]:
    """What each message adds to each spend. Events without a price add nothing. The scopes
    are stacked into one table: one group-by for the days, one for the months."""
    columns = ["organization_id", *MEMBER_FIELDS.values(), "currency", "timestamp", "total_cost"]
    valid = pc.is_valid(priced.column("total_cost"))
    priced = priced.select(columns).filter(valid)  # the priced table is wide: filter what is read
    rows = priced.num_rows
    if rows == 0:
        return []
    message = message[valid.to_numpy(zero_copy_only=False)]
    base = {
        "message": pa.array(message.astype(np.int64)),
        "organization_id": priced.column("organization_id").cast(pa.string()),
        "currency": pc.fill_null(priced.column("currency").cast(pa.string()), "USD"),
        "day": pa.array(np.floor_divide(priced.column("timestamp").cast(pa.int64()).to_numpy(), DAY_S * 1000) * DAY_S),
        "cost": priced.column("total_cost"),
    }
    scopes = list(SCOPE_COLUMNS.items())
    parts = []
    for number, (_, column) in enumerate(scopes):
        member = pa.repeat("", rows) if column is None else priced.column(column).cast(pa.string())
        part = pa.table({**base, "scope": pa.array(np.full(rows, number, dtype=np.int8)), "member": member})
        parts.append(part if column is None else part.filter(pc.is_valid(member)))
    keys = ["message", "organization_id", "scope", "member", "currency"]
    daily = pa.concat_tables(parts).group_by([*keys, "day"], use_threads=False).aggregate([("cost", "sum")])
    days, day_index = np.unique(daily.column("day").to_numpy(), return_inverse=True)
    months = np.array([period_start("monthly", int(day)) for day in days], dtype=np.int64)[day_index]
    monthly = (
        daily.append_column("month", pa.array(months))
        .group_by([*keys, "month"], use_threads=False)
        .aggregate([("cost_sum", "sum")])
    )
    names = [scope for scope, _ in scopes]
    out: list[Contribution] = []
    for period, table, start, cost in (
        ("daily", daily, "day", "cost_sum"),
        ("monthly", monthly, "month", "cost_sum_sum"),
    ):
        columns_ = (
            table.column(name).to_pylist()
            for name in ["message", start, "scope", "organization_id", "member", "currency", cost]
        )
        out.extend(
            (number, period, begin, names[scope], org, member, currency, amount)
            for number, begin, scope, org, member, currency, amount in zip(*columns_, strict=True)
        )
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


def count_spend(
    positions: Sequence[tuple[int, int]],
    contributions: Iterable[Contribution],
    store: SpendStore,
    newest_s: dict[int, int],
    retention_days: int,
    firsts: dict[int, int] | None = None,
    ceiling_s: int = 2**62,
) -> Counted | None:
    """Add each message's contributions to the stored spends, once.

    With ``firsts`` (partition -> its first offset in the take), each contribution stands for
    several messages of its partition, from that first offset to its own: None when a bucket
    was counted up to the middle of them (the caller counts message by message instead).

    ``positions``: (partition, offset) of each message of the take, each once, offsets rising
    within a partition; ``newest_s``: the start of the newest day seen per partition (this take
    moves it on, up to ``ceiling_s``). A
    message at or below a bucket's stored offset is counted in it already (a replay); every
    bucket the take touched is counted up to the take's last offset of its partition.
    """
    last: dict[int, int] = {}
    for partition, offset in positions:
        last[partition] = max(last.get(partition, -1), offset)
    newest = dict(newest_s)
    items = list(contributions)
    for number, period, start, *_ in items:
        if period == "daily":  # every event has a daily spend: the newest day says how old a period is
            partition = positions[number][0]
            # Clamped: one event from the far future must not expire every real period.
            newest[partition] = max(newest.get(partition, 0), min(start, ceiling_s))
    kept = {(p, period): oldest_kept(period, day, retention_days) for p, day in newest.items() for period in PERIODS}
    buckets: dict[tuple[int, str, int, str, int], Bucket] = {}
    stored_offset: dict[tuple[int, str, int, str, int], int] = {}
    skipped = 0
    for number, period, start, scope, org, member, currency, cost in items:
        partition, offset = positions[number]
        if start < kept[(partition, period)]:
            skipped += 1
            continue
        slot = (partition, period, start, org, shard_of(scope, member))
        bucket = buckets.get(slot)
        if bucket is None:
            stored = store.get(partition, BucketKey(period, start, org, slot[4]))
            bucket = buckets[slot] = Bucket() if stored is None else Bucket(stored.offset, dict(stored.spends))
            stored_offset[slot] = bucket.offset
        counted_to = stored_offset[slot]
        if offset <= counted_to:
            continue  # counted before this take: a replay
        if firsts is not None and firsts[partition] <= counted_to:
            return None  # counted up to the middle of the messages this contribution sums
        series = (scope, member, currency)
        old = bucket.spends.get(series)
        bucket.spends[series] = Spend(cost) if old is None else Spend(old.amount + cost, old.reached)
    for (partition, *_), bucket in buckets.items():
        bucket.offset = max(bucket.offset, last[partition])
    named = {(p, BucketKey(period, start, org, shard)): b for (p, period, start, org, shard), b in buckets.items()}
    return Counted(named, newest, skipped)


def count_take(
    positions: Sequence[tuple[int, int]],
    priced: pa.Table,
    message: np.ndarray,
    store: SpendStore,
    newest_s: dict[int, int],
    retention_days: int,
    now_s: int,
) -> Counted:
    """Count a take's priced events (row ``i`` from message ``message[i]``) into the spends.
    ``positions`` must hold each message once, offsets rising within a partition (the budget
    step drops a message delivered twice in one take).

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
    ceiling = now_s + DAY_S
    counted = count_spend(positions, summed, store, newest_s, retention_days, firsts, ceiling)
    if counted is None:
        exact = spend_contributions(priced, message)
        counted = count_spend(positions, exact, store, newest_s, retention_days, ceiling_s=ceiling)
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
        self._by_organization: dict[tuple[str, str], list[Budget]] = {}
        for budget in self.budgets:
            self._by_organization.setdefault((budget.period, budget.organization_id), []).append(budget)

    def of(self, period: str, organization_id: str) -> list[Budget]:
        return self._by_organization.get((period, organization_id), [])


def crossings(counted: Counted, book: BudgetBook) -> list[Crossing]:
    """Thresholds reached in this take and not reached before in the period, lowest first.
    Every spend of a touched bucket is read (a new budget may read one the take left alone)."""
    found = []
    for (partition, bucket), value in sorted(counted.buckets.items()):
        for budget in book.of(bucket.period, bucket.organization_id):
            if period_end(bucket.period, bucket.start_s) <= budget.created_at.timestamp():
                continue  # a period that ended before the budget existed (a late event for it)
            key = SpendKey(bucket.period, bucket.start_s, *budget.series)
            spend = value.spends.get(key.slot)
            if spend is None or key.bucket != bucket:
                continue
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


def budget_alert(crossing: Crossing, now: datetime) -> dict[str, Any]:
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
        "window_start": iso_millis(start),
        "window_end": iso_millis(end),
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
        "created_at": iso_millis(now),
    }
