"""``cost-ops auth``: API keys (create, list, revoke, rotate) through a running API, with
the admin key (or ``COSTOPS_API_KEY``)."""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime, timedelta
from typing import Any

from llm_cost_ops.cli.client import ApiClient
from llm_cost_ops.cli.console import err, out
from llm_cost_ops.settings import Settings

PATH = "/api/v1/admin/api-keys"


def cmd_create(args: argparse.Namespace, settings: Settings) -> int:
    body: dict[str, Any] = {"name": args.name, "role": args.role, "environment": "test" if args.test else "live"}
    if args.organization:
        body["organization_id"] = args.organization
    if args.scopes:
        body["scopes"] = [s.strip() for s in args.scopes.split(",") if s.strip()]
    if args.expires_in_days:
        body["expires_at"] = (datetime.now(UTC) + timedelta(days=args.expires_in_days)).isoformat()
    with ApiClient.for_settings(settings) as client:
        key = client.post(PATH, body)
    if args.output == "json":
        out(json.dumps(key, indent=2))
        return 0
    out(key["key"])
    err(
        f"created {key['id']} ({key['name']}) for organization {key['organization_id']}, role {key['role']}"
        + (f", expires {key['expires_at']}" if key["expires_at"] else "")
        + ". The key above is shown once: store it now."
    )
    return 0


def cmd_list(args: argparse.Namespace, settings: Settings) -> int:
    params = {"organization_id": args.organization} if args.organization else None
    with ApiClient.for_settings(settings) as client:
        keys = client.get(PATH, params)["data"]
    for key in keys:
        state = "revoked" if key["revoked_at"] else "active"
        used = (key["last_used_at"] or "never")[:19]
        out(f"{key['id']:<26} {key['prefix']}…  {key['organization_id']:<20} {key['role']:<10} {state:<8} used {used}")
    out(f"{len(keys)} key(s)")
    return 0


def cmd_revoke(args: argparse.Namespace, settings: Settings) -> int:
    with ApiClient.for_settings(settings) as client:
        key = client.delete(f"{PATH}/{args.key_id}")
    out(f"revoked {key['id']} ({key['name']}) at {key['revoked_at']}")
    return 0


def cmd_rotate(args: argparse.Namespace, settings: Settings) -> int:
    with ApiClient.for_settings(settings) as client:
        key = client.post(f"{PATH}/{args.key_id}/rotate", {})
    out(key["key"])
    err(f"rotated {key['id']}: the previous secret no longer works. The key above is shown once.")
    return 0


def add_auth_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    auth = sub.add_parser("auth", help="API keys: create, list, revoke, rotate")
    commands = auth.add_subparsers(dest="auth_command", required=True, metavar="ACTION")
    create = commands.add_parser("create-api-key", help="create a key; prints the secret once")
    create.add_argument("--name", required=True)
    create.add_argument("--organization", help="default: the caller's organization")
    create.add_argument("--role", default="developer", help="admin, manager, analyst, developer, viewer or custom")
    create.add_argument("--scopes", help="comma-separated permissions the key is limited to")
    create.add_argument("--expires-in-days", type=int)
    create.add_argument("--test", action="store_true", help="an sk_test_ key")
    create.add_argument("--output", choices=["key", "json"], default="key")
    create.set_defaults(func=cmd_create)
    listing = commands.add_parser("list-api-keys", help="keys without their secrets")
    listing.add_argument("--organization")
    listing.set_defaults(func=cmd_list)
    revoke = commands.add_parser("revoke-api-key", help="revoke a key by id")
    revoke.add_argument("key_id")
    revoke.set_defaults(func=cmd_revoke)
    rotate = commands.add_parser("rotate-api-key", help="a new secret for a key; the old one stops working")
    rotate.add_argument("key_id")
    rotate.set_defaults(func=cmd_rotate)
