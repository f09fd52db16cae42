"""Command line: ``edge serve``, ``edge token``, ``edge version``."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys

from . import __version__
from .config import load_config
from .errors import ConfigError


def _serve(args: argparse.Namespace) -> int:
    import uvicorn
    import uvloop

    from .app import create_app
    from .observability.logging import configure_logging

    config = load_config(args.config)
    if args.host:
        config.http.host = args.host
    if args.port is not None:
        config.http.port = args.port
    configure_logging(config.log.format, config.log.level)
    app = create_app(config, codec_tripwire=True)
    # The WebRTC UDP port is bound before serving, so a port already taken is a
    # one-line error (ConfigError: exit 2) rather than a failed lifespan.
    app.state.ctx.node.bind()
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host=config.http.host,
            port=config.http.port,
            loop="none",
            http="h11",
            # The message path writes pre-built frames to this protocol's
            # transport (edge/messaging/wsframes.py): keep the two in step.
            ws="websockets-sansio",
            ws_per_message_deflate=False,
            log_level="warning",
            access_log=False,
            lifespan="on",
            timeout_graceful_shutdown=5,
        )
    )
    # uvicorn's own signal capture re-raises SIGTERM after shutting down, so the
    # process would die "by signal". Handle SIGINT/SIGTERM here instead: the
    # lifespan shutdown closes every session (DTLS close_notify to each peer)
    # and the process exits 0.
    server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign]

    async def run() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, server.handle_exit, sig, None)
        await server.serve()

    uvloop.run(run())
    return 0 if server.started else 1
    return 0


def _token(args: argparse.Namespace) -> int:
    from .auth import TokenAuthority, load_or_create_secret

    config = load_config(args.config)
    secret = load_or_create_secret(config.auth.secret, config.data_path)
    authority = TokenAuthority(secret, config.auth.issuer)
    ttl = args.ttl if args.ttl is not None else config.auth.token_ttl_seconds
    try:
        print(
            authority.issue(
                room=args.room, identity=args.identity, role=args.role, ttl_seconds=ttl,
                region=args.region or "",
            )
        )
    except ValueError as exc:
        print(f"edge token: {exc}", file=sys.stderr)
        return 2
    return 0


def _plugins(args: argparse.Namespace) -> int:
    import json

    from .config import load_config
    from prometheus_client import CollectorRegistry

    from .observability.logging import configure_logging
    from .plugins.manager import PluginHost

    config = load_config(args.config)
    configure_logging(config.log.format, config.log.level, to_stderr=True)  # stdout: the listing
    host = PluginHost(config, CollectorRegistry())
    described = host.describe()
    if args.json:
        print(json.dumps(described, indent=2))
    elif not described:
        print("no plugins loaded")
    for plugin in described if not args.json else []:
        print(f"{plugin['name']}: {', '.join(plugin['hooks']) or '(no hooks)'}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="edge", description="edge: live-commerce media edge node")
    parser.add_argument("--config", help="TOML config file (default: built-in embedded config, or $EDGE_CONFIG)")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the node")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.set_defaults(func=_serve)

    token = sub.add_parser("token", help="print a JWT signed with the node secret")
    token.add_argument("--room", required=True, help="room name, or * for every room")
    token.add_argument("--identity", required=True)
    token.add_argument(
        "--role", required=True,
        choices=["viewer", "host", "cohost", "moderator", "service", "admin"],
    )
    token.add_argument("--ttl", type=int, help="lifetime in seconds")
    token.add_argument("--region", help="the participant's region (optional claim)")
    token.set_defaults(func=_token)

    plugins = sub.add_parser("plugins", help="list loaded plugins and the hooks each implements")
    plugins.add_argument("--json", action="store_true")
    plugins.set_defaults(func=_plugins)

    version = sub.add_parser("version", help="print the version")
    version.set_defaults(func=lambda a: print(__version__) or 0)

    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except ConfigError as exc:
        print(f"edge: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
