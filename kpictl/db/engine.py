"""One engine per process: psycopg 3, NullPool, kpictl's session settings on every connection."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from kpictl.errors import ConfigurationError
from kpictl.redact import mask_url
from kpictl.serialize import dumps
from kpictl.settings import Settings

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Database:
    engine: Engine
    url: str  # the full URL, password included: never print it, use `shown`
    source: str  # where the URL came from ("embedded", "KPICTL_DATABASE_URL", ...)
    embedded_dir: str | None = None

    @property
    def shown(self) -> str:
        return mask_url(self.url)


def session_options(settings: Settings) -> str:
    """libpq `options`: every session runs in UTC with statement and lock timeouts."""
    return (
        f"-c TimeZone=UTC -c statement_timeout={settings.statement_timeout_ms} "
        f"-c lock_timeout={settings.lock_timeout_ms}"
    )


def make_engine(url: str, settings: Settings) -> Engine:
    from sqlalchemy import create_engine
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError
    from sqlalchemy.pool import NullPool

    try:
        # The URL's own libpq `options` (e.g. -csearch_path=platform) are kept; kpictl's come
        # after them, so that its sessions always run in UTC with kpictl's timeouts.
        own_options = make_url(url).query.get("options")
        if isinstance(own_options, tuple):
            own_options = " ".join(own_options)
        options = (
            f"{own_options} {session_options(settings)}"
            if own_options
            else session_options(settings)
        )
        return create_engine(
            url,
            poolclass=NullPool,
            json_serializer=dumps,
            connect_args={
                "application_name": settings.command[:63],
                "options": options,
                "connect_timeout": 10,
                # Notice a server or network that went away while a session idles (the job
                # lock's session idles for a whole run); ignored on unix sockets.
                "keepalives": 1,
                "keepalives_idle": 30,
                "keepalives_interval": 10,
                "keepalives_count": 3,
            },
        )
    except ArgumentError as exc:
        raise ConfigurationError(f"invalid database URL {mask_url(url)}: {exc}") from None


def open_database(settings: Settings) -> Database:
    """Resolve the target of `settings` to an engine, starting the embedded server if needed."""
    settings.target.check_usable()
    if settings.target.is_embedded:
        from kpictl.db.embedded import start_embedded

        server = start_embedded(settings.data_dir)
        if server.started:  # said once, when it starts: it keeps running for the next commands
            log.info(
                "kpictl: started the embedded PostgreSQL server (data in %s; "
                "`kpictl demo --stop` stops it)",
                server.data_dir / "pgdata",
            )
        return Database(
            make_engine(server.url, settings), server.url, "embedded", str(server.data_dir)
        )
    url = settings.target.url
    if url is None:  # resolve_target gives a URL to every target but the embedded one
        raise ValueError(f"database target {settings.target.source!r} has no URL")
    return Database(make_engine(url, settings), url, settings.target.source)
