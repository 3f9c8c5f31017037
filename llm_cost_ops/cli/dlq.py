"""``cost-ops dlq list`` and ``cost-ops dlq replay``: what the pipeline could not use, and
sending it again after a fix."""

from __future__ import annotations

import argparse
from typing import Any

from llm_cost_ops.cli.client import ApiClient
from llm_cost_ops.cli.console import out
from llm_cost_ops.settings import Settings

PATH = "/api/v1/dlq"


def cmd_list(args: argparse.Namespace, settings: Settings) -> int:
    shown = 0
    cursor: str | None = None
    with ApiClient.for_settings(settings) as client:
        while True:
            params: dict[str, Any] = {"limit": min(args.limit - shown, 1000)}
            if cursor:
                params["cursor"] = cursor
            if args.kind:
                params["kind"] = args.kind
            page = client.get(PATH, params)
            for letter in page["data"]:
                where = letter["source_topic"] or "?"
                if letter["batch_index"] is not None:
                    where += f" (event {letter['batch_index']} of a batch)"
                out(f"{letter['id']:<10} {letter['timestamp'][:19]}  {letter['kind']:<16} {letter['reason']}")
                if letter["field_errors"]:
                    out(f"{'':<10} fields: {letter['field_errors']}")
                out(f"{'':<10} from {where}, key {letter['key']}, {letter['size']} bytes")
            shown += len(page["data"])
            cursor = page["next_cursor"]
            if not page["has_more"] or shown >= args.limit:
                break
    out(f"{shown} dead letter(s)" + (" (more: raise --limit)" if cursor else ""))
    return 0


def cmd_replay(args: argparse.Namespace, settings: Settings) -> int:
    body: dict[str, Any] = {"all": True, "kind": args.kind} if args.all else {"ids": args.ids}
    with ApiClient.for_settings(settings) as client:
        result = client.post(f"{PATH}/replay", body)
    out(f"replayed {result['replayed']} dead letter(s) into the usage topic")
    return 0


def add_dlq_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    dlq = sub.add_parser("dlq", help="dead letters: list them, replay them after a fix")
    commands = dlq.add_subparsers(dest="dlq_command", required=True, metavar="ACTION")
    listing = commands.add_parser("list", help="dead letters with their reasons, oldest first")
    listing.add_argument("--kind", help="DECODE_ERROR or VALIDATION_ERROR")
    listing.add_argument("--limit", type=int, default=100, help="most to show (default 100)")
    listing.set_defaults(func=cmd_list)
    replay = commands.add_parser("replay", help="send dead letters again (by id, or --all)")
    replay.add_argument("ids", nargs="*", metavar="ID", help="partition:offset, as listed")
    replay.add_argument("--all", action="store_true", help="every dead letter (of --kind)")
    replay.add_argument("--kind", help="with --all: only this kind")
    replay.set_defaults(func=cmd_replay)
