"""``cost-ops pricing missing`` and ``cost-ops reprice``: unpriced events, and pricing a range again."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, date, datetime, timedelta
from typing import Any

from tqdm import tqdm

from llm_cost_ops.cli.client import ApiClient
from llm_cost_ops.cli.console import out
from llm_cost_ops.errors import InvalidInputError
from llm_cost_ops.settings import Settings


def cmd_missing(args: argparse.Namespace, settings: Settings) -> int:
    params = {"organization_id": args.organization, "provider": args.provider, "limit": args.limit}
    with ApiClient.for_settings(settings) as client:
        found = client.get("/api/v1/pricing/missing", {k: v for k, v in params.items() if v is not None})
    if not found["data"]:
        out("every event has a price")
        return 0
    rows = [
        (m["provider"], m["model"], m["organization_id"], str(m["events"]), m["first_seen"][:10], m["last_seen"][:10])
        for m in found["data"]
    ]
    header = ("provider", "model", "organization", "events", "first", "last")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        out("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
    out(f"{found['total']} model(s) without a price ({found['data'][0]['error']['code']}); add one with "
        "`cost-ops pricing add`, then `cost-ops reprice --from ... --to ...`")  # fmt: skip
    return 0


def _day(text: str, flag: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise InvalidInputError(f"invalid {flag}", {flag: "must be a date, YYYY-MM-DD"}) from None


def cmd_reprice(args: argparse.Namespace, settings: Settings) -> int:
    """Day by day, so a long range shows progress and no request runs for long; tier volumes
    continue exactly from one day to the next (each day starts from the stored month)."""
    first, last = _day(args.start, "--from"), _day(args.end, "--to")
    if last < first:
        raise InvalidInputError("invalid --to", {"--to": "must not be before --from"})
    days = [first + timedelta(days=n) for n in range((last - first).days + 1)]
    totals: dict[str, Any] = {"events": 0, "priced": 0, "unpriced": 0}
    with (
        ApiClient.for_settings(settings) as client,
        tqdm(days, unit=" days", desc="reprice", file=sys.stderr, disable=None) as bar,
    ):
        for day in bar:
            body = {"start_date": day.isoformat(), "end_date": day.isoformat(), "organization_id": args.organization}
            done = client.post("/api/v1/pricing/reprice", body)
            for key in totals:
                totals[key] += done[key]
            bar.set_postfix(events=totals["events"])
    who = f" of {args.organization}" if args.organization else ""
    out(
        f"repriced {totals['events']} events{who} from {first} to {last} (inclusive): "
        f"{totals['priced']} priced, {totals['unpriced']} unpriced, at {datetime.now(UTC):%Y-%m-%d %H:%M:%S} UTC"
    )
    return 0


def add_reprice_commands(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    pricing: argparse._SubParsersAction[argparse.ArgumentParser],
) -> None:
    missing = pricing.add_parser("missing", help="events without a price (COST_001), by provider and model")
    missing.add_argument("--organization")
    missing.add_argument("--provider")
    missing.add_argument("--limit", type=int, default=1000)
    missing.set_defaults(func=cmd_missing)

    reprice = sub.add_parser("reprice", help="price stored events again with today's prices (replaces, never adds)")
    reprice.add_argument("--from", dest="start", required=True, help="first day, YYYY-MM-DD (UTC)")
    reprice.add_argument("--to", dest="end", required=True, help="last day, YYYY-MM-DD (UTC), included")
    reprice.add_argument("--organization", help="only this organization's events")
    reprice.set_defaults(func=cmd_reprice)
