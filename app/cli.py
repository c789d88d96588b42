"""``vop``: serve the API, write demo data, score the matcher.

Exit codes: 0 success, 1 the work ran but failed its check (eval below --fail-under), 2 bad usage
or configuration (argparse's convention), 3 runtime failure (unreadable snapshot, bind error).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from app.security.settings import SecuritySettings

EXIT_OK, EXIT_CHECK_FAILED, EXIT_USAGE, EXIT_RUNTIME = 0, 1, 2, 3


class CliError(Exception):
    def __init__(self, message: str, code: int = EXIT_RUNTIME) -> None:
        super().__init__(message)
        self.code = code


def _env_help(name: str) -> str:
    return f"[env VOP_{name.upper()}]"


def _serve(args: argparse.Namespace) -> int:
    # First, before anything imports prometheus_client: the per-server runtime dir that holds the
    # multi-process metrics files and the drain marker (exports PROMETHEUS_MULTIPROC_DIR).
    from app.observability.runtime import prepare_runtime_dir

    runtime = prepare_runtime_dir()
    from granian import Granian
    from granian.constants import Interfaces, Loops, RuntimeModes

    from app.demo import curl_example, ensure_demo_snapshot
    from app.index_config import is_redis_url
    from app.observability.logging import configure_logging, granian_log_dictconfig
    from app.observability.shutdown import DrainController
    from app.security.gate import uses_dev_key
    from app.security.settings import security_settings_from, validate_security_settings
    from app.settings import settings_from

    # Every flag is its VOP_* variable: set it in the environment, which the parent and every
    # worker process read, so flags and variables cannot disagree.
    for field in _serve_fields():
        value = getattr(args, field, None)
        if value is not None:
            os.environ[f"VOP_{field.upper()}"] = str(value)
    settings = settings_from()
    if settings.index and not is_redis_url(settings.index) and not Path(settings.index).is_file():
        raise CliError(f"VOP_INDEX: snapshot file not found: {settings.index}", EXIT_USAGE)
    # Refuse unsafe security settings here, in one readable line, before any worker starts.
    security = security_settings_from(
        {**os.environ, "VOP_HOST": settings.host, "VOP_DATA_DIR": settings.data_dir}
    )
    validate_security_settings(security)
    index_path = Path(settings.index) if settings.index else ensure_demo_snapshot(settings)
    # Workers are separate processes that read their settings from the environment.
    os.environ.update(
        {
            "VOP_HOST": settings.host,
            "VOP_PORT": str(settings.port),
            "VOP_WORKERS": str(settings.workers),
            "VOP_INTERFACE": settings.interface,
            "VOP_INDEX": str(settings.index) if is_redis_url(settings.index) else str(index_path),
            "VOP_INDEX_PREFIX": settings.index_prefix,
            "VOP_PSP_BICS": ",".join(settings.psp_bics),
            "VOP_DATA_DIR": settings.data_dir,
            "VOP_LOG_LEVEL": settings.log_level,
        }
    )
    token = _dev_token(security) if security.auth and uses_dev_key(security) else None
    if token:
        print(
            "Auth: local dev key (var/dev-keys/); the token below is valid 8 h for REQBDEFFXXX "
            "(vop:verify vop:bulk). Mint others with: vop token --scope ... --bic ..."
        )
    if not settings.index:
        print(f"Serving the demo index {index_path} (partyAgent BIC {settings.psp_bics[0]}). Try:\n")
        print(curl_example(index_path, settings.replace(index=str(index_path)), token), "\n", flush=True)
    elif token:
        print(f"Token: {token}\n", flush=True)
    rsgi = settings.interface == "rsgi"
    server = Granian(
        "app.rsgi:app_from_env" if rsgi else "app.asgi:app_from_env",
        address=settings.host,
        port=settings.port,
        interface=Interfaces.RSGI if rsgi else Interfaces.ASGI,
        workers=settings.workers,
        loop=Loops(settings.loop),
        runtime_threads=settings.runtime_threads,
        runtime_mode=RuntimeModes(settings.runtime_mode),
        backlog=settings.backlog,
        backpressure=settings.backpressure or None,
        factory=True,
        log_level=settings.log_level,  # type: ignore[arg-type]
        log_dictconfig=granian_log_dictconfig(settings.log_level),
        respawn_failed_workers=True,
    )
    configure_logging(settings.log_level)
    # SIGTERM: readiness turns 503 in every worker, requests keep being served for
    # VOP_DRAIN_SECONDS, then granian stops accepting and finishes what is in flight.
    DrainController.from_env(runtime).attach(server)
    server.serve()
    return EXIT_OK


def _dev_token(
    security: SecuritySettings,
    scopes: Sequence[str] = ("vop:verify", "vop:bulk"),
    bic: str = "REQBDEFFXXX",
    ttl_s: int = 8 * 3600,
) -> str:
    from app.security.devkeys import DEV_AUDIENCE, DEV_ISSUER, mint_dev_token

    return mint_dev_token(
        security.data_dir, tuple(scopes), bic, ttl_s,
        issuer=security.jwt_issuer or DEV_ISSUER, audience=security.jwt_audience or DEV_AUDIENCE,
        bic_claim=security.jwt_bic_claim,
    )  # fmt: skip


def _token(args: argparse.Namespace) -> int:
    from app.security.gate import uses_dev_key
    from app.security.settings import security_settings_from

    security = security_settings_from()
    if not uses_dev_key(security):
        raise CliError(
            "vop token mints from the local dev key only; VOP_JWT_JWKS names a real issuer", EXIT_USAGE
        )
    if args.ttl < 1:
        raise CliError("--ttl must be at least 1 second", EXIT_USAGE)
    print(_dev_token(security, args.scope.split(), args.bic.upper(), args.ttl))
    return EXIT_OK


def _audit_verify(args: argparse.Namespace) -> int:
    from app.security.audit import verify_audit_files
    from app.security.gate import audit_key_for
    from app.security.settings import security_settings_from

    paths = [Path(p) for p in args.files]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise CliError(f"audit file not found: {missing[0]}", EXIT_USAGE)
    report = verify_audit_files(
        paths, audit_key_for(security_settings_from()), allow_open_tail=args.allow_open
    )
    print(report.render())
    return EXIT_OK if report.ok else EXIT_CHECK_FAILED


def _redis_load(args: argparse.Namespace) -> int:
    from app.progress import Progress
    from matching.sources.parquet import read_snapshot
    from matching.sources.redis_layout import HashEncodeError, load_snapshot_into_redis

    path = Path(args.snapshot)
    if not path.is_file():
        raise CliError(f"snapshot file not found: {path}", EXIT_USAGE)
    total = read_snapshot(path).num_rows
    bar = Progress(total, "redis load")
    try:
        summary = load_snapshot_into_redis(args.redis, path, args.prefix, progress=bar.update)
    except HashEncodeError as exc:
        raise CliError(f"snapshot rejected, nothing written: {exc}", EXIT_USAGE) from None
    except (ConnectionError, TimeoutError) as exc:
        raise CliError(f"Redis unreachable: {exc}") from None
    bar.finish(
        f"{summary.accounts:,} accounts under {summary.prefix} in {summary.seconds:.1f} s, "
        f"stream at {summary.last_stream_id} ({summary.stream_length:,} entries)"
    )
    return EXIT_OK


def _demo_data(args: argparse.Namespace) -> int:
    from app.demo import write_demo_snapshot

    if args.accounts < 1:
        raise CliError("--accounts must be at least 1", EXIT_USAGE)
    write_demo_snapshot(args.accounts, Path(args.out), seed=args.seed)
    print(f"wrote {args.accounts:,} accounts to {args.out}")
    return EXIT_OK


def _eval(args: argparse.Namespace) -> int:
    from app.evaluate import CasesError, evaluate, read_cases, render

    path = Path(args.cases)
    if not path.is_file():
        raise CliError(f"cases file not found: {path}", EXIT_USAGE)
    try:
        report = evaluate(read_cases(path), show_progress=not args.json)
    except CasesError as exc:
        raise CliError(str(exc), EXIT_USAGE) from None
    print(json.dumps(report.as_dict(), indent=2, ensure_ascii=False) if args.json else render(report))
    if args.fail_under is not None and (report.accuracy * 100 < args.fail_under or report.false_mtch):
        return EXIT_CHECK_FAILED
    return EXIT_OK


_SECRET_FIELDS = frozenset({"audit_key"})
# Read from the environment by the observability layer (app/observability/shutdown.py).
_EXTRA_DEFAULTS: dict[str, Any] = {"drain_seconds": 5.0}
_SERVE_HELP = {
    "host": "bind address",
    "port": "port",
    "workers": "worker processes",
    "interface": "granian interface, rsgi or asgi",
    "runtime_threads": "granian Rust runtime threads per worker",
    "runtime_mode": "granian runtime mode: auto, st or mt",
    "loop": "event loop: uvloop or asyncio",
    "backlog": "listen backlog",
    "backpressure": "connections a worker serves at once (0: backlog / workers)",
    "index": "Parquet snapshot or Redis URL; unset: generated demo index",
    "psp_bics": "comma-separated BICs answered for",
    "data_dir": "folder for generated files",
    "log_level": "debug, info, warning or error",
}


def _serve_fields() -> list[str]:
    """Every setting of the service and of its security layer but secrets: one flag each
    (``--max-in-flight`` for ``VOP_MAX_IN_FLIGHT``)."""
    import msgspec

    from app.security.settings import SecuritySettings
    from app.settings import Settings
    from matching.sources.redis_source import RedisSourceSettings

    names = [f.name for f in msgspec.structs.fields(Settings)]
    names += [f.name for f in msgspec.structs.fields(SecuritySettings) if f.name not in names]
    names += [f"index_{f.name}" for f in msgspec.structs.fields(RedisSourceSettings)]
    names += list(_EXTRA_DEFAULTS)
    # Secrets only through the environment: a command line is visible to every local user (ps).
    return [n for n in names if n not in _SECRET_FIELDS]


def _add_serve_flags(serve: argparse.ArgumentParser) -> None:
    import msgspec

    from app.security.settings import SecuritySettings
    from app.settings import Settings
    from matching.sources.redis_source import RedisSourceSettings

    defaults: dict[str, Any] = dict(_EXTRA_DEFAULTS)
    defaults.update({f"index_{f.name}": f.default for f in msgspec.structs.fields(RedisSourceSettings)})
    defaults.update({f.name: f.default for f in msgspec.structs.fields(SecuritySettings)})
    defaults.update({f.name: f.default for f in msgspec.structs.fields(Settings)})
    for name in _serve_fields():
        default = defaults.get(name)
        shown = "unset" if default is None or default is msgspec.NODEFAULT else default
        if isinstance(shown, bool):
            shown = "on" if shown else "off"
        elif isinstance(shown, tuple):
            shown = ",".join(shown) or "none"
        what = _SERVE_HELP.get(
            name,
            "Redis index refresh, see README"
            if name.startswith("index_")
            else "see README / docs/security.md",
        )
        serve.add_argument(
            "--" + name.replace("_", "-"),
            dest=name,
            metavar="VALUE",
            help=f"{what} (default {shown}) {_env_help(name)}",
        )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vop", description="Verification of Payee responder")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = sub.add_parser(
        "serve",
        help="serve the VoP API on granian",
        description="Serve the VoP API. Flags override the VOP_* environment.",
    )
    _add_serve_flags(serve)
    serve.set_defaults(func=_serve)

    demo = sub.add_parser(
        "demo-data",
        help="write a demo snapshot (Parquet)",
        description="Write a deterministic demo snapshot of realistic accounts.",
    )
    demo.add_argument("--accounts", type=int, default=100_000, help="number of accounts (default 100000)")
    demo.add_argument("--out", required=True, help="output .parquet path")
    demo.add_argument("--seed", type=int, default=None, help="generator seed (default: the demo seed)")
    demo.set_defaults(func=_demo_data)

    ev = sub.add_parser(
        "eval",
        help="score the matcher on a labelled cases file",
        description="Replay a cases CSV (format of shared/eval/dev_cases.csv) through the API path.",
    )
    ev.add_argument("cases", help="cases CSV")
    ev.add_argument("--json", action="store_true", help="print the report as JSON")
    ev.add_argument(
        "--fail-under",
        type=float,
        metavar="PCT",
        help="exit 1 if accuracy is below PCT percent or any false MTCH occurs",
    )
    ev.set_defaults(func=_eval)

    tok = sub.add_parser(
        "token",
        help="mint a token from the local dev key (loopback development only)",
        description="Mint a JWT signed with the local dev key under VOP_DATA_DIR/dev-keys.",
    )
    tok.add_argument("--scope", default="vop:verify", help="space-separated scopes (default vop:verify)")
    tok.add_argument("--bic", default="REQBDEFFXXX", help="the client's BIC claim (default REQBDEFFXXX)")
    tok.add_argument("--ttl", type=int, default=3600, help="lifetime in seconds (default 3600)")
    tok.set_defaults(func=_token)

    rds = sub.add_parser("redis", help="Redis index tools", description="Redis index tools.")
    rds_sub = rds.add_subparsers(dest="redis_command", required=True, metavar="ACTION")
    rl = rds_sub.add_parser(
        "load",
        help="write a snapshot file into Redis (hashes + change stream)",
        description="Write every account of a Parquet snapshot into Redis in the "
        "documented layout, one change-stream entry per account, in MULTI/EXEC batches.",
    )
    rl.add_argument("snapshot", help="snapshot .parquet file")
    rl.add_argument(
        "--redis",
        default=os.environ.get("VOP_INDEX", "redis://127.0.0.1:6379/0"),
        help="Redis URL (default: $VOP_INDEX or redis://127.0.0.1:6379/0)",
    )
    rl.add_argument(
        "--prefix",
        default=os.environ.get("VOP_INDEX_PREFIX", "vop:"),
        help="key prefix (default: $VOP_INDEX_PREFIX or vop:)",
    )
    rl.set_defaults(func=_redis_load)

    audit = sub.add_parser("audit", help="audit trail tools", description="Audit trail tools.")
    audit_sub = audit.add_subparsers(dest="audit_command", required=True, metavar="ACTION")
    av = audit_sub.add_parser(
        "verify",
        help="check the hash chain and MACs of audit files",
        description="Exit 0 if the files are intact, 1 at the first tampered line. "
        "The key is VOP_AUDIT_KEY (or the local dev key on loopback).",
    )
    av.add_argument("files", nargs="+", help="audit .jsonl files (any order; grouped by chain)")
    av.add_argument("--allow-open", action="store_true", help="accept a last file still being written")
    av.set_defaults(func=_audit_verify)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from app.settings import SettingsError
    from matching.index import IndexBuildError

    args = build_parser().parse_args(argv)
    if getattr(args, "seed", 0) is None:
        from bench.datagen import DEMO_SEED

        args.seed = DEMO_SEED
    try:
        return int(args.func(args))
    except SettingsError as exc:
        print(f"vop: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except IndexBuildError as exc:
        print(f"vop: error: {exc}", file=sys.stderr)
        return EXIT_RUNTIME
    except CliError as exc:
        print(f"vop: error: {exc}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        return 130
    except OSError as exc:
        print(f"vop: error: {exc}", file=sys.stderr)
        return EXIT_RUNTIME


if __name__ == "__main__":
    sys.exit(main())
