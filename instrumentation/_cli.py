"""The ``llmlens`` command line.

Subcommands import what they need when they run, so ``llmlens --help`` stays fast and
``import llmlens`` stays light. Every failure becomes one line on stderr and exit code 1.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Literal


class CLIError(Exception):
    """A failure to report as one line."""


def _cmd_demo(args: argparse.Namespace) -> int:
    from llmlens.dashboard._demo_store import choose_demo_store
    from llmlens.dashboard.demo import run_demo

    mode: Literal["ask", "append", "fresh"] = "append" if args.append else "fresh" if args.fresh else "ask"
    interactive = sys.stdin is not None and sys.stdin.isatty()
    target = choose_demo_store(args.db, mode, interactive=interactive)
    if target.note:
        print(target.note, flush=True)
    summary = run_demo(db_url=target.url, calls=args.calls, seed=args.seed)
    print(summary, flush=True)
    if args.no_dashboard:
        return 0
    from llmlens.dashboard.launch import run_dashboard

    return run_dashboard(target.url, host=args.host, port=args.port, headless=args.headless)


def _cmd_collector(args: argparse.Namespace) -> int:
    from llmlens.collector.server import serve

    return serve(
        host=args.host,
        port=args.port,
        db_url=args.db,
        token=args.token,
        max_body_bytes=int(args.max_body_mb * 1024 * 1024),
        capture_content=args.capture_content,
        queue_max_batches=args.queue_max_batches,
        alert_interval=args.alert_interval,
        log_level=args.log_level,
        workers=args.workers,
        retention_days=args.retention_days,
        spool_dir=args.spool_dir,
        spool_max_bytes=None if args.spool_max_mb is None else int(args.spool_max_mb * 1024 * 1024),
        grpc_port=args.grpc_port,
    )


def _cmd_dashboard(args: argparse.Namespace) -> int:
    from llmlens.dashboard.launch import run_dashboard

    return run_dashboard(args.db, host=args.host, port=args.port, headless=args.headless)


def _cmd_alerts_check(args: argparse.Namespace) -> int:
    from llmlens.collector.alerts import check_alerts
    from llmlens.collector.store import open_store

    events = check_alerts(open_store(args.db), send=not args.dry_run)
    for event in events:
        print(f"FIRED {event.rule_name}: {event.message}")
    if not events:
        print("no alert fired")
    return 0


def _cmd_alerts_add(args: argparse.Namespace) -> int:
    from llmlens.collector.alerts import add_rule
    from llmlens.collector.store import open_store

    task = None if args.all_tasks_together else args.task
    rule_id = add_rule(open_store(args.db), name=args.name, metric=args.metric, threshold=args.threshold,
                       window_minutes=args.window, min_calls=args.min_calls, task=task,
                       webhook_url=args.webhook, cooldown_minutes=args.cooldown)
    print(f"rule {rule_id} added: {args.name}")
    return 0


def _cmd_alerts_list(args: argparse.Namespace) -> int:
    from llmlens.collector.queries import list_alert_rules
    from llmlens.collector.store import open_store

    rules = list_alert_rules(open_store(args.db).engine)
    for r in rules:
        state = "on " if r["enabled"] else "off"
        print(f"{r['id']:>3} {state} {r['name']}: {r['metric']} > {r['threshold']} over {r['window_minutes']} min, "
              f"task {r['task'] or '(all together)'}, webhook {r['webhook_url'] or '$LLMLENS_ALERT_WEBHOOK'}")
    if not rules:
        print("no alert rules (the collector adds the invalid-output spike rule on start)")
    return 0


def _cmd_db_upgrade(args: argparse.Namespace) -> int:
    from llmlens.collector.migrate import upgrade
    from llmlens.collector.store import resolve_url

    before, after = upgrade(args.db, args.revision)
    url = resolve_url(args.db)
    if before == after:
        print(f"{url}: already at revision {after}")
    else:
        print(f"{url}: upgraded {before or 'empty store'} -> {after}")
    return 0


def _cmd_db_current(args: argparse.Namespace) -> int:
    from llmlens.collector.migrate import head_revision
    from llmlens.collector.store import current_revision, get_engine

    current = current_revision(get_engine(args.db))
    print(f"store revision: {current or 'none (empty store)'}; newest: {head_revision()}")
    return 0


def _cmd_db_prune(args: argparse.Namespace) -> int:
    from llmlens.collector.store import open_store, prune

    if args.raw_days <= 0 or (args.rollup_days is not None and args.rollup_days < args.raw_days):
        raise ValueError("--raw-days must be positive and --rollup-days at least --raw-days")
    store = open_store(args.db)
    now = datetime.now(UTC)
    rollups_before = None if args.rollup_days is None else now - timedelta(days=args.rollup_days)
    result = prune(store.engine, raw_before=now - timedelta(days=args.raw_days), rollups_before=rollups_before,
                   batch=args.batch)
    print(f"{store.url}: deleted {result.raw_rows} raw rows, {result.minute_rollups} minute rollups "
          f"and {result.rollups} hour/day rollups")
    return 0


def _parse_since(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO date: {text!r} (try 2026-11-01)") from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _cmd_prices_recompute(args: argparse.Namespace) -> int:
    from llmlens.collector.pricing import Pricer
    from llmlens.collector.reprice import recompute_costs
    from llmlens.collector.store import open_store

    result = recompute_costs(open_store(args.db), Pricer.from_env(args.prices), since=args.since)
    print(f"re-priced {result.scanned} rows: {result.changed} changed, {result.unpriced} unpriced")
    return 0


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="llmlens", description="Observe and price LLM calls in production.")
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    db_help = "store URL (default: $LLMLENS_DB_URL or sqlite:///llmlens.db)"

    demo = sub.add_parser("demo", help="write a realistic workload into the store, then open the dashboard")
    demo.add_argument("--db", help=db_help)
    existing = demo.add_mutually_exclusive_group()
    existing.add_argument("--append", "--yes", "-y", action="store_true",
                          help="add to a store that already holds calls, without asking")
    existing.add_argument("--fresh", action="store_true",
                          help="if the store holds calls, write a fresh <name>-demo.db next to it instead "
                               "(what happens without a terminal to ask on)")
    demo.add_argument("--calls", type=int, default=1500, help="how many logical calls to simulate")
    demo.add_argument("--seed", type=int, default=7)
    demo.add_argument("--no-dashboard", action="store_true", help="only write the workload")
    demo.add_argument("--host", default="127.0.0.1")
    demo.add_argument("--port", type=int, default=8501)
    demo.add_argument("--headless", action="store_true", help="do not open a browser")
    demo.set_defaults(func=_cmd_demo)

    coll = sub.add_parser("collector", help="run the OTLP receiver (HTTP POST /v1/traces, gRPC)")
    coll.add_argument("--host", default="127.0.0.1")
    coll.add_argument("--port", type=int, default=4318)
    coll.add_argument("--db", help=db_help)
    coll.add_argument("--token", default=None, help="bearer token senders must present "
                      "(default: $LLMLENS_COLLECTOR_TOKEN)")
    coll.add_argument("--max-body-mb", type=float, default=4.0, help="largest request body, before and after gzip")
    coll.add_argument("--capture-content", action="store_true",
                      help="keep prompts and answers (redacted) instead of dropping them")
    coll.add_argument("--alert-interval", type=float, default=60.0,
                      help="seconds between alert evaluations (0 disables)")
    coll.add_argument("--queue-max-batches", type=int, default=32,
                      help="requests waiting for the writer before senders get 503")
    coll.add_argument("--workers", type=int, default=1,
                      help="collector processes sharing the port (one core each)")
    coll.add_argument("--retention-days", type=float, default=None,
                      help="prune raw rows older than this many days, once a day (default: keep them)")
    coll.add_argument("--spool-dir", default=None, help="where batches wait while the database is down "
                      "(default: $LLMLENS_SPOOL_DIR, else ~/.llmlens/spool)")
    coll.add_argument("--spool-max-mb", type=float, default=None,
                      help="spool size limit in MiB (default: $LLMLENS_SPOOL_MAX_BYTES, else 256; 0 disables it)")
    coll.add_argument("--grpc-port", type=int, default=4317, help="OTLP/gRPC port (0 disables gRPC)")
    coll.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    coll.set_defaults(func=_cmd_collector)

    dash = sub.add_parser("dashboard", help="start the Streamlit dashboard on the store")
    dash.add_argument("--db", help=db_help)
    dash.add_argument("--host", default="127.0.0.1")
    dash.add_argument("--port", type=int, default=8501)
    dash.add_argument("--headless", action="store_true", help="do not open a browser")
    dash.set_defaults(func=_cmd_dashboard)

    alerts = sub.add_parser("alerts", help="alert rules")
    alerts_sub = alerts.add_subparsers(dest="alerts_command", metavar="COMMAND", required=True)
    check = alerts_sub.add_parser("check", help="evaluate the alert rules once and send webhooks")
    check.add_argument("--db", help=db_help)
    check.add_argument("--dry-run", action="store_true", help="evaluate and record, send nothing")
    check.set_defaults(func=_cmd_alerts_check)
    add = alerts_sub.add_parser("add", help="add an alert rule")
    add.add_argument("--db", help=db_help)
    add.add_argument("--name", required=True)
    add.add_argument("--metric", required=True,
                     help="invalid_output_rate, failure_rate, spend_usd, wasted_spend_usd or p95_ms")
    add.add_argument("--threshold", type=float, required=True, help="fire when the metric is above this")
    add.add_argument("--window", type=int, default=15, help="trailing window, minutes")
    add.add_argument("--min-calls", type=int, default=20, help="calls needed before a rate can fire")
    add.add_argument("--task", default="*", help="one task, or * for every task separately (default)")
    add.add_argument("--all-tasks-together", action="store_true", help="watch all calls as one")
    add.add_argument("--webhook", default=None, help="URL to POST to (default: $LLMLENS_ALERT_WEBHOOK)")
    add.add_argument("--cooldown", type=int, default=60, help="minutes a fired rule stays quiet")
    add.set_defaults(func=_cmd_alerts_add)
    lst = alerts_sub.add_parser("list", help="list alert rules")
    lst.add_argument("--db", help=db_help)
    lst.set_defaults(func=_cmd_alerts_list)

    db = sub.add_parser("db", help="store schema")
    db_sub = db.add_subparsers(dest="db_command", metavar="COMMAND", required=True)
    up = db_sub.add_parser("upgrade", help="apply schema migrations")
    up.add_argument("--db", help=db_help)
    up.add_argument("--revision", default="head")
    up.set_defaults(func=_cmd_db_upgrade)
    cur = db_sub.add_parser("current", help="show the store's schema revision")
    cur.add_argument("--db", help=db_help)
    cur.set_defaults(func=_cmd_db_current)
    pr = db_sub.add_parser("prune", help="delete old raw rows (charts keep their history in the rollups)")
    pr.add_argument("--db", help=db_help)
    pr.add_argument("--raw-days", type=float, required=True, help="keep raw rows of the last N days")
    pr.add_argument("--rollup-days", type=float, default=None,
                    help="also delete hour and day rollups older than M days (default: keep them)")
    pr.add_argument("--batch", type=int, default=5000, help="rows deleted per transaction")
    pr.set_defaults(func=_cmd_db_prune)

    prices = sub.add_parser("prices", help="pricing")
    prices_sub = prices.add_subparsers(dest="prices_command", metavar="COMMAND", required=True)
    rec = prices_sub.add_parser("recompute", help="re-price stored rows from their tokens")
    rec.add_argument("--db", help=db_help)
    rec.add_argument("--since", type=_parse_since, default=None, help="only rows from this date (ISO)")
    rec.add_argument("--prices", default=None, help="override TOML (default: $LLMLENS_PRICES)")
    rec.set_defaults(func=_cmd_prices_recompute)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``llmlens`` console script."""
    parser = _build_parser()
    args = parser.parse_args(argv)
    if args.version:
        from llmlens._config import _version

        print(f"llmlens {_version()}")
        return 0
    func: Callable[[argparse.Namespace], int] | None = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 2
    try:
        return func(args)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # the boundary: one line, no traceback
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"llmlens {args.command}: error: {message}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
