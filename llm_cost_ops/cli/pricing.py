"""``cost-ops pricing``: add, list, show, update and delete custom prices through the API.

Prices stay exact: options are parsed as ``Decimal`` and sent as strings, never as floats.
``update`` reads the rule, applies the options given and sends the whole rule back, so
``cost-ops pricing update ID --end-date 2025-07-01`` changes only the end date.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Sequence
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from llm_cost_ops.cli.client import ApiClient
from llm_cost_ops.cli.console import out
from llm_cost_ops.errors import InvalidInputError
from llm_cost_ops.settings import Settings

PATH = "/api/v1/pricing"

# Structure fields and the options that set them: API field errors are reported by option.
_TOKEN_OPTIONS = {
    "input_price": "input_price_per_million",
    "output_price": "output_price_per_million",
    "cached_discount": "cached_input_discount",
    "cached_price": "cached_input_price_per_million",
    "reasoning_price": "reasoning_price_per_million",
}
_REQUEST_OPTIONS = {
    "per_request": "price_per_request",
    "included_tokens": "included_tokens",
    "overage_price": "overage_price_per_million",
}
_RULE_OPTIONS = {
    "currency": "currency",
    "effective_date": "effective_date",
    "end_date": "end_date",
    "organization": "organization_id",
    "project": "project_id",
    "description": "description",
}


def _flag(dest: str) -> str:
    return "--" + dest.replace("_", "-")


_FIELD_FLAGS = {
    **{f"pricing_structure.{field}": _flag(dest) for dest, field in {**_TOKEN_OPTIONS, **_REQUEST_OPTIONS}.items()},
    **{field: _flag(dest) for dest, field in _RULE_OPTIONS.items()},
}
_INPUT_FIELDS = ("provider", "model", "pricing_structure", *_RULE_OPTIONS.values())


def _decimal(text: str) -> Decimal:
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value.is_finite():
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


def _structure(args: argparse.Namespace, current: dict[str, Any] | None) -> dict[str, Any] | None:
    """The pricing structure the options describe, over ``current`` when updating; None when
    no option touches the structure (update keeps it)."""
    token = {dest for dest in _TOKEN_OPTIONS if getattr(args, dest) is not None}
    request = {dest for dest in _REQUEST_OPTIONS if getattr(args, dest) is not None}
    given = [_flag(d) for d in sorted(token | request)]
    if args.tiers is not None:
        if given:
            raise InvalidInputError("conflicting options", {"--tiers": f"cannot be combined with {', '.join(given)}"})
        return {"type": "tiered", "tiers": _tiers(args.tiers)}
    if token and request:
        raise InvalidInputError(
            "conflicting options",
            {_flag(sorted(request)[0]): f"per-request pricing takes no {', '.join(_flag(d) for d in sorted(token))}"},
        )
    if request:
        kind = "per_request"
    elif token or current is None:
        kind = "per_token"
    else:
        return None  # an update that gives no price keeps the structure
    options = _REQUEST_OPTIONS if request else _TOKEN_OPTIONS
    structure: dict[str, Any] = dict(current) if current is not None and current.get("type") == kind else {"type": kind}
    if args.cached_discount is not None:
        structure.pop("cached_input_price_per_million", None)
    if args.cached_price is not None:
        structure.pop("cached_input_discount", None)
    for dest, name in options.items():
        value = getattr(args, dest)
        if value is not None:
            structure[name] = value if isinstance(value, int) else str(value)
    return structure


def _tiers(value: str) -> Any:
    """``--tiers``: a JSON list of tiers (or ``{"tiers": [...]}``), inline or in a file."""
    text = value if value.lstrip().startswith(("[", "{")) else Path(value).read_text()
    try:
        # parse_float=str: the digits as written reach the API, which parses them as Decimal.
        tiers = json.loads(text, parse_float=str)
    except json.JSONDecodeError as exc:
        raise InvalidInputError("invalid --tiers", {"--tiers": f"must be a JSON list of tiers ({exc})"}) from None
    return tiers["tiers"] if isinstance(tiers, dict) and "tiers" in tiers else tiers


def _body(args: argparse.Namespace, current: dict[str, Any] | None = None) -> dict[str, Any]:
    """The rule to send: ``current`` (update) with the options given applied."""
    body = {k: v for k, v in (current or {}).items() if k in _INPUT_FIELDS}
    for key in ("provider", "model"):
        if getattr(args, key, None) is not None:
            body[key] = getattr(args, key)
    structure = _structure(args, body.get("pricing_structure"))
    if structure is not None:
        body["pricing_structure"] = structure
    for dest, name in _RULE_OPTIONS.items():
        value = getattr(args, dest)
        if (dest, value) in (("end_date", "none"), ("description", "")):
            body[name] = None
        elif value is not None:
            body[name] = value
    return body


def _send(call: Callable[..., Any], *call_args: Any) -> Any:
    """Call the API; its field errors come back named by the options that set them."""
    try:
        return call(*call_args)
    except InvalidInputError as exc:
        fields = {}
        for name, reason in exc.field_errors.items():
            flag = _FIELD_FLAGS.get(name) or name.replace("pricing_structure.tiers", "--tiers")
            fields[flag] = reason
        raise InvalidInputError(exc.message, fields) from None


def cmd_add(args: argparse.Namespace, settings: Settings) -> int:
    with ApiClient.for_settings(settings) as client:
        rule = _send(client.post, PATH, _body(args))
    out(f"created {rule['id']}")
    out(describe(rule))
    return 0


def cmd_update(args: argparse.Namespace, settings: Settings) -> int:
    with ApiClient.for_settings(settings) as client:
        current = client.get(f"{PATH}/{args.id}")
        rule = _send(client.put, f"{PATH}/{args.id}", _body(args, current))
    out(f"updated {rule['id']}")
    out(describe(rule))
    return 0


def cmd_delete(args: argparse.Namespace, settings: Settings) -> int:
    with ApiClient.for_settings(settings) as client:
        rule = client.delete(f"{PATH}/{args.id}")
    out(f"deleted {rule['id']} ({rule['provider']}/{rule['model']}, {_owner(rule)})")
    return 0


def cmd_list(args: argparse.Namespace, settings: Settings) -> int:
    params = {"provider": args.provider, "model": args.model, "organization_id": args.organization}
    params = {k: v for k, v in params.items() if v is not None}
    if args.active:
        params["active"] = "true"
    with ApiClient.for_settings(settings) as client:
        page = client.get(PATH, params=params)
    out(rule_table(page["data"]))
    return 0


def cmd_show(args: argparse.Namespace, settings: Settings) -> int:
    with ApiClient.for_settings(settings) as client:
        rule = client.get(f"{PATH}/{args.id}")
        history = client.get(f"{PATH}/{args.id}/history")
    out(describe(rule))
    out()
    out(history_table(history))
    return 0


def describe(rule: dict[str, Any]) -> str:
    lines = [
        f"id:          {rule['id']}",
        f"price of:    {rule['provider']}/{rule['model']}, {_owner(rule)}",
        f"pricing:     {_prices(rule['pricing_structure'])} ({rule['currency']})",
        f"in force:    {_when(rule['effective_date'])} to {_when(rule['end_date'])}",
    ]
    if rule.get("description"):
        lines.append(f"description: {rule['description']}")
    lines.append(f"created:     {_when(rule['created_at'])} by {rule.get('created_by') or '-'}")
    return "\n".join(lines)


_LIST_COLUMNS = ("ID", "PROVIDER", "MODEL", "FOR", "PRICES", "CURRENCY", "FROM", "TO")


def rule_table(rules: list[dict[str, Any]]) -> str:
    if not rules:
        return "no pricing rules match"
    rows = [
        (
            r["id"],
            r["provider"],
            r["model"],
            _owner(r),
            _prices(r["pricing_structure"]),
            r["currency"],
            _when(r["effective_date"]),
            _when(r["end_date"]),
        )
        for r in rules
    ]
    return _table(_LIST_COLUMNS, rows)


def history_table(entries: list[dict[str, Any]]) -> str:
    rows = [(str(e["id"]), _when(e["at"]), e["actor"], e["action"], _changes(e)) for e in entries]
    return _table(("CHANGE", "AT", "ACTOR", "ACTION", "FIELDS"), rows)


def _changes(entry: dict[str, Any]) -> str:
    before, after = entry.get("before") or {}, entry.get("after") or {}
    if entry["action"] != "update":
        return "-"
    changed = [k for k in after if k != "updated_at" and before.get(k) != after.get(k)]
    return ", ".join(changed) or "none"


def _table(columns: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max([len(c), *(len(row[i]) for row in rows)]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    return "\n".join(lines)


def _owner(rule: dict[str, Any]) -> str:
    if rule["scope"] == "project":
        return f"project {rule['organization_id']}/{rule['project_id']}"
    if rule["scope"] == "organization":
        return f"organization {rule['organization_id']}"
    return "everyone"


def _prices(structure: dict[str, Any]) -> str:
    """One line per structure, amounts as exact plain decimals (never ``1E-10``)."""
    if structure["type"] == "per_request":
        text = f"{_num(structure['price_per_request'])}/request"
        if structure.get("included_tokens") or Decimal(structure.get("overage_price_per_million") or 0):
            text += f", {structure['included_tokens']} tokens included"
            text += f", then {_num(structure['overage_price_per_million'])}/1M"
        return text
    if structure["type"] == "tiered":
        tiers = structure["tiers"]
        return "; ".join(f"from {t['threshold']}: {_token_rates(t)}" for t in tiers)
    return _token_rates(structure)


def _token_rates(rates: dict[str, Any]) -> str:
    text = f"in {_num(rates['input_price_per_million'])}, out {_num(rates['output_price_per_million'])}"
    if rates.get("cached_input_price_per_million") is not None:
        text += f", cached {_num(rates['cached_input_price_per_million'])}"
    elif rates.get("cached_input_discount") is not None:
        text += f", cached -{_num((Decimal(rates['cached_input_discount']) * 100).normalize())}%"
    if rates.get("reasoning_price_per_million") is not None:
        text += f", reasoning {_num(rates['reasoning_price_per_million'])}"
    return text + " /1M"


def _num(value: str | Decimal) -> str:
    return f"{Decimal(value):f}"


def _when(value: str | None) -> str:
    """``2025-01-01T00:00:00Z`` -> ``2025-01-01``; open ends show as ``open``."""
    if value is None:
        return "open"
    day, _, time = value.partition("T")
    return day if time in ("00:00:00Z", "") else f"{day} {time[:5]} UTC"


def _rule_options(parser: argparse.ArgumentParser) -> None:
    token = parser.add_argument_group("per-token pricing (per million tokens)")
    token.add_argument("--input-price", type=_decimal, metavar="PRICE")
    token.add_argument("--output-price", type=_decimal, metavar="PRICE")
    cached = token.add_mutually_exclusive_group()
    cached.add_argument("--cached-discount", type=_decimal, metavar="FRACTION", help="0.5 = cached input at half price")
    cached.add_argument("--cached-price", type=_decimal, metavar="PRICE", help="cached input price")
    token.add_argument("--reasoning-price", type=_decimal, metavar="PRICE", help="default: the output price")
    request = parser.add_argument_group("per-request pricing")
    request.add_argument("--per-request", type=_decimal, metavar="PRICE", help="price of one call")
    request.add_argument("--included-tokens", type=int, metavar="N", help="tokens per call the price includes")
    request.add_argument("--overage-price", type=_decimal, metavar="PRICE", help="per million tokens beyond those")
    parser.add_argument("--tiers", metavar="FILE_OR_JSON", help='volume tiers: [{"threshold": 0, ...}, ...]')
    parser.add_argument("--currency", help="ISO 4217 code (default USD)")
    parser.add_argument("--effective-date", metavar="DATE", help="date or ISO 8601 timestamp, UTC (default: always)")
    parser.add_argument("--end-date", metavar="DATE", help="exclusive end (default: open; 'none' on update opens it)")
    parser.add_argument("--organization", help="price for one organization only")
    parser.add_argument("--project", help="price for one project of --organization only")
    parser.add_argument("--description", help="free text ('' on update removes it)")


def add_pricing_commands(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
) -> argparse._SubParsersAction[argparse.ArgumentParser]:
    """Add ``cost-ops pricing ...``; returns its subparsers, for more pricing commands."""
    pricing = sub.add_parser("pricing", help="custom prices: add, list, show, update, delete")
    commands = pricing.add_subparsers(dest="pricing_command", required=True, metavar="ACTION")

    add = commands.add_parser("add", help="add a price (per token unless --per-request or --tiers)")
    add.add_argument("--provider", required=True)
    add.add_argument("--model", required=True)
    _rule_options(add)
    add.set_defaults(func=cmd_add)

    listing = commands.add_parser("list", help="list prices")
    listing.add_argument("--provider")
    listing.add_argument("--model")
    listing.add_argument("--organization")
    listing.add_argument("--active", action="store_true", help="only prices in force now")
    listing.set_defaults(func=cmd_list)

    show = commands.add_parser("show", help="a price and its history")
    show.add_argument("id")
    show.set_defaults(func=cmd_show)

    change = commands.add_parser("update", help="change a price (options not given stay as they are)")
    change.add_argument("id")
    change.add_argument("--provider")
    change.add_argument("--model")
    _rule_options(change)
    change.set_defaults(func=cmd_update)

    delete = commands.add_parser("delete", help="delete a price (its history stays)")
    delete.add_argument("id")
    delete.set_defaults(func=cmd_delete)
    return commands
