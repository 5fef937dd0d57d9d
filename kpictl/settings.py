"""Settings resolved once, at the CLI boundary, into a frozen object.

Nothing below the CLI reads `os.environ`; it receives a `Settings`. URL resolution follows docs/spec/cli.md:
`--database-url`, `KPICTL_DATABASE_URL`, `DATABASE_URL`, the file named by
`KPICTL_DATABASE_URL_FILE`, `$CREDENTIALS_DIRECTORY/database-url`; with none of them, the embedded
server.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from kpictl.config import SETTINGS, Chosen, ConfigFile, choose, chosen_settings, load_config
from kpictl.errors import ConfigurationError, UsageError

if TYPE_CHECKING:
    from zoneinfo import ZoneInfo

EMBEDDED = "embedded"
DEFAULT_STATEMENT_TIMEOUT_MS = 10 * 60 * 1000
DEFAULT_LOCK_TIMEOUT_MS = 30 * 1000
# SIGTERM / SIGINT: how long the current step of a job may still run before its query is
# cancelled server-side (KPICTL_STOP_GRACE_SECONDS overrides it, for tests).
DEFAULT_STOP_GRACE_SECONDS = 60.0

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|min|h|d)?\s*$")
_DURATION_MS = {"ms": 1, "s": 1000, "m": 60_000, "min": 60_000, "h": 3_600_000, "d": 86_400_000}


@dataclass(frozen=True)
class DatabaseTarget:
    """Where the database URL came from, and the URL itself (None for the embedded server)."""

    source: str  # "--database-url", "KPICTL_DATABASE_URL", ..., or "embedded"
    url: str | None = field(repr=False)
    # No URL, and the embedded server may not stand in here (why): raised when a command
    # opens the database, so commands that need none (`migrate --sql`) still run.
    refusal: str | None = None

    @property
    def is_embedded(self) -> bool:
        return self.url is None and self.refusal is None

    def check_usable(self) -> None:
        if self.refusal is not None:
            raise ConfigurationError(
                f"no database configured ({self.refusal}), and kpictl does not fall back to "
                "the embedded server there",
                hint="set KPICTL_DATABASE_URL_FILE, LoadCredential=database-url:FILE, "
                "database_url_file in the config file, or --database-url; --embedded (or "
                "KPICTL_EMBEDDED=1) uses the embedded server on purpose",
            )


@dataclass(frozen=True)
class Settings:
    target: DatabaseTarget
    command: str = "kpictl"
    statement_timeout_ms: int = DEFAULT_STATEMENT_TIMEOUT_MS
    lock_timeout_ms: int = DEFAULT_LOCK_TIMEOUT_MS
    source_timezone: str = "UTC"
    data_dir: Path | None = None  # embedded server home; None = the user data directory
    verbose: bool = False
    quiet: bool = False
    log_format: str = "text"
    argv: tuple[str, ...] = ()
    stop_grace_seconds: float = DEFAULT_STOP_GRACE_SECONDS  # SIGTERM: the current step's grace
    config: ConfigFile = field(default_factory=ConfigFile)  # what the config file set
    source_timezone_origin: str = "default"
    chosen: Mapping[str, Chosen] = field(default_factory=dict)  # config.SETTINGS, without flags
    # --read-url and its variables: where the commands of READ_COMMANDS read (None: `target`)
    read_target: DatabaseTarget | None = None
    # Test hooks (KPICTL_DEBUG_*) are read by kpictl/_testing.py, not here.

    def setting(self, key: str, flag: str | None) -> Chosen:
        """Setting `key` of `config.SETTINGS`: the flag's value when given, else the
        environment's, the config file's or the default (`chosen`)."""
        if flag is not None:
            return Chosen(flag, SETTINGS[key].flag, key)
        chosen = self.chosen or chosen_settings(self.config, {})
        return chosen[key]


def resolve_target(
    flag_url: str | None,
    environ: Mapping[str, str],
    *,
    config: ConfigFile | None = None,
    embedded_allowed: bool = True,
    why_not_embedded: str = "",
) -> DatabaseTarget:
    """Pick the database URL by the order of docs/spec/cli.md, then the config file's
    `database_url_file`; the embedded server when none is set and `embedded_allowed`.

    A source that is given but empty (`--database-url ""`, `KPICTL_DATABASE_URL=`, e.g. a cron
    line whose variable is unset) is a usage error naming it, never a fall-through to the next
    source or to the embedded server: only an absent (unset) source falls through. So is a
    credential directory without a `database-url` credential (a misnamed `LoadCredential=`).
    """
    if flag_url is not None:
        _not_empty(flag_url, "--database-url")
        return DatabaseTarget("--database-url", normalize_url(flag_url, "--database-url"))
    for name in ("KPICTL_DATABASE_URL", "DATABASE_URL"):
        if name in environ:
            _not_empty(environ[name], name)
            return DatabaseTarget(name, normalize_url(environ[name], name))
    if "KPICTL_DATABASE_URL_FILE" in environ:
        _not_empty(environ["KPICTL_DATABASE_URL_FILE"], "KPICTL_DATABASE_URL_FILE")
        path = Path(environ["KPICTL_DATABASE_URL_FILE"])
        return DatabaseTarget(
            f"KPICTL_DATABASE_URL_FILE ({path})", _read_url_file(path, "KPICTL_DATABASE_URL_FILE")
        )
    if environ.get("CREDENTIALS_DIRECTORY"):
        path = Path(environ["CREDENTIALS_DIRECTORY"]) / "database-url"
        if not path.exists():
            raise ConfigurationError(
                f"$CREDENTIALS_DIRECTORY ({path.parent}) has no database-url credential",
                hint="name the credential database-url in the unit: "
                "LoadCredential=database-url:/etc/kpictl/database-url",
            )
        return DatabaseTarget(f"credential {path}", _read_url_file(path, "credential"))
    if config is not None and config.database_url_file is not None:
        path = config.database_url_file
        origin = f"database_url_file of {config.origin}"
        return DatabaseTarget(f"{origin} ({path})", _read_url_file(path, origin))
    if not embedded_allowed:
        return DatabaseTarget("none", None, refusal=why_not_embedded)
    return DatabaseTarget(EMBEDDED, None)


# The commands that only read, and so may read from a replica (--read-url); `doctor` checks it.
READ_COMMANDS = (
    "kpictl kpis",
    "kpictl freshness",
    "kpictl jobs",
    "kpictl jobs show",
    "kpictl history export",
    "kpictl report",
)


def resolve_read_target(
    flag_url: str | None, environ: Mapping[str, str], command: str
) -> DatabaseTarget | None:
    """The read URL of a command of READ_COMMANDS (and of `doctor`, which checks it): --read-url,
    KPICTL_READ_DATABASE_URL, KPICTL_READ_DATABASE_URL_FILE, then a `read-database-url`
    credential when there is one; None when none is set. A command that writes refuses the
    flag (exit 2) and ignores the variables, which are meant for every command's environment."""
    reads = command in READ_COMMANDS or command == "kpictl doctor"
    if flag_url is not None:
        _not_empty(flag_url, "--read-url")
        if not reads:
            names = ", ".join(name.removeprefix("kpictl ") for name in READ_COMMANDS)
            raise UsageError(
                f"--read-url is for the commands that only read ({names}): `{command}` "
                "writes, to the database of --database-url"
            )
        return DatabaseTarget("--read-url", normalize_url(flag_url, "--read-url"))
    if not reads:
        return None
    if "KPICTL_READ_DATABASE_URL" in environ:
        value = environ["KPICTL_READ_DATABASE_URL"]
        _not_empty(value, "KPICTL_READ_DATABASE_URL")
        return DatabaseTarget(
            "KPICTL_READ_DATABASE_URL", normalize_url(value, "KPICTL_READ_DATABASE_URL")
        )
    if "KPICTL_READ_DATABASE_URL_FILE" in environ:
        origin = "KPICTL_READ_DATABASE_URL_FILE"
        _not_empty(environ[origin], origin)
        path = Path(environ[origin])
        return DatabaseTarget(f"{origin} ({path})", _read_url_file(path, origin))
    credential = Path(environ.get("CREDENTIALS_DIRECTORY") or "/nonexistent") / "read-database-url"
    if environ.get("CREDENTIALS_DIRECTORY") and credential.exists():
        return DatabaseTarget(f"credential {credential}", _read_url_file(credential, "credential"))
    return None


def embedded_refusal(
    environ: Mapping[str, str], *, interactive: bool, explicit: bool, set_up: bool
) -> str | None:
    """Why the embedded server must not be the silent default here, or None when it may be.

    - `--embedded` or `KPICTL_EMBEDDED=1` ask for it: always allowed (`kpictl demo` too);
    - under systemd (`INVOCATION_ID` is set): never, a service without a URL is misconfigured;
    - without a terminal (cron, scripts, containers): only when this user's embedded server
      already exists (`set_up`: its data directory was made by a demo or an earlier command),
      so a cron job or a script never creates one, and a deployment whose URL went missing
      fails instead of reading an empty sample database;
    - in a terminal: allowed (trying kpictl out)."""
    if explicit or environ.get("KPICTL_EMBEDDED", "").strip().lower() in ("1", "true", "yes"):
        return None
    if environ.get("INVOCATION_ID"):
        return "running as a systemd service: INVOCATION_ID is set"
    if not interactive and not set_up:
        return "no terminal (cron, a script, a container) and no embedded server set up"
    return None


def embedded_set_up(data_dir: Path | None) -> bool:
    """Whether this user's embedded server exists (its data directory was initialised)."""
    from kpictl.db.embedded import default_data_dir

    return ((data_dir or default_data_dir()).expanduser() / "pgdata" / "PG_VERSION").is_file()


def _not_empty(value: str, origin: str) -> None:
    if not value.strip():
        raise ConfigurationError(
            f"empty database URL from {origin}: give a postgresql:// URL, or leave {origin} "
            "out (unset) to use the next source"
        )


def _read_url_file(path: Path, origin: str) -> str:
    try:
        text = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigurationError(
            f"cannot read the database URL file {path}: {exc.strerror}"
        ) from None
    if not text:
        raise ConfigurationError(f"the database URL file {path} is empty")
    return normalize_url(text.splitlines()[0].strip(), f"{origin} {path}")


def normalize_url(url: str, origin: str) -> str:
    """Accept postgresql:// and postgres:// URLs (any driver suffix); return a psycopg 3 URL."""
    scheme, sep, rest = url.strip().partition("://")
    base = scheme.split("+", 1)[0].lower()
    if not sep or base not in ("postgresql", "postgres"):
        shown = scheme if sep else "(none)"
        raise ConfigurationError(
            f"invalid database URL from {origin}: scheme {shown!r} is not postgresql:// or "
            "postgres://"
        )
    authority = re.split(r"[/?]", rest, maxsplit=1)[0]
    if authority.count("@") > 1:
        # libpq would split at the first '@' and print the rest as a host name: a leak.
        raise ConfigurationError(
            f"invalid database URL from {origin}: its user or password contains '@'; "
            "percent-encode it as %40"
        )
    url = f"postgresql+psycopg://{rest}"
    _check_authority(authority, origin)
    _check_parses(url, origin)
    return url


def _check_authority(authority: str, origin: str) -> None:
    """One host, a port in 1-65535: libpq's multi-host lists (h1,h2) are refused, since kpictl's
    locks and job rows need one primary, and a bad port is named before any connection."""
    hostspec = authority.rpartition("@")[2]
    if "," in hostspec:
        raise ConfigurationError(
            f"invalid database URL from {origin}: several hosts ({hostspec}); kpictl connects "
            "to one server: give one host (a DNS name or a proxy in front of the cluster)"
        )
    if hostspec.startswith("["):  # [IPv6]:port
        port = hostspec.partition("]")[2].removeprefix(":")
    else:
        port = hostspec.partition(":")[2]
    if port:
        _check_port(port, origin)


def _check_port(port: str, origin: str) -> None:
    if not (port.isascii() and port.isdigit() and 1 <= int(port) <= 65535):
        raise ConfigurationError(
            f"invalid database URL from {origin}: port {port!r} is not a number in 1-65535"
        )


def _check_parses(url: str, origin: str) -> None:
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
        _ = parsed.port
    except (ArgumentError, ValueError) as exc:
        from kpictl.redact import redact, secrets_of_url

        reason = redact(str(exc), secrets_of_url(url))
        raise ConfigurationError(f"invalid database URL from {origin}: {reason}") from None
    known = _libpq_parameters()
    for name, value in parsed.query.items():
        if name not in known:
            raise ConfigurationError(
                f"invalid database URL from {origin}: unknown parameter {name!r} (libpq's "
                "connection parameters: sslmode, options, application_name, connect_timeout, "
                "host, target_session_attrs, ...)"
            )
        values = value if isinstance(value, tuple) else (value,)
        if name in ("host", "hostaddr") and any("," in item for item in values):
            raise ConfigurationError(
                f"invalid database URL from {origin}: several hosts in ?{name}=; kpictl "
                "connects to one server"
            )
        if name == "port":
            for item in values:
                _check_port(item, origin)


def _libpq_parameters() -> set[str]:
    """The connection parameters the installed libpq knows (what it would accept)."""
    import psycopg

    return {option.keyword.decode() for option in psycopg.pq.Conninfo.get_defaults()}


def parse_duration_ms(value: str, name: str) -> int:
    """'600', '90s', '10m', '10min', '2h', '1d', '500ms' -> milliseconds (bare numbers are seconds)."""
    match = _DURATION.match(value)
    if not match:
        raise UsageError(f"invalid duration for {name}: {value!r} (use e.g. 600, 90s, 10m, 2h, 1d)")
    number, unit = float(match.group(1)), match.group(2) or "s"
    return int(number * _DURATION_MS[unit])


def duration_seconds(value: str, name: str) -> float:
    """A duration as `parse_duration_ms` reads it, in seconds: '90s' -> 90.0, '10m' -> 600.0."""
    return parse_duration_ms(value, name) / 1000


def time_zone(name: str, source: str) -> ZoneInfo:
    """The IANA time zone `name` (e.g. Europe/Berlin), or a UsageError naming `source`."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise UsageError(
            f"invalid value for {source}: {name!r} is not an IANA time zone (e.g. Europe/Berlin)"
        ) from None


def settings_from_environment(
    *,
    flag_url: str | None,
    command: str,
    flag_read_url: str | None = None,
    environ: Mapping[str, str] | None = None,
    verbose: bool = False,
    quiet: bool = False,
    log_format: str = "text",
    argv: tuple[str, ...] = (),
    config_path: str | None = None,
    interactive: bool = True,
    embedded: bool = False,
) -> Settings:
    """Settings from the flags, the environment and the config file (in that order of
    precedence). `interactive`: a terminal is attached; `embedded`: `--embedded` was given (or
    the command is the demo's), see `embedded_refusal`."""
    env = os.environ if environ is None else environ
    config = load_config(config_path, env)
    statement_timeout = env.get("KPICTL_STATEMENT_TIMEOUT")
    lock_timeout = env.get("KPICTL_LOCK_TIMEOUT")
    data_dir = env.get("KPICTL_DATA_DIR")
    home = Path(data_dir) if data_dir else None
    refusal = embedded_refusal(
        env, interactive=interactive, explicit=embedded, set_up=embedded_set_up(home)
    )
    zone = choose(
        flag=None,
        flag_name="",
        environ=env,
        env_names=("KPICTL_SOURCE_TIMEZONE",),
        file_value=config.source_timezone,
        config=config,
        default="UTC",
    )
    return Settings(
        target=resolve_target(
            flag_url,
            env,
            config=config,
            embedded_allowed=refusal is None,
            why_not_embedded=refusal or "",
        ),
        command=command,
        statement_timeout_ms=(
            parse_duration_ms(statement_timeout, "KPICTL_STATEMENT_TIMEOUT")
            if statement_timeout
            else DEFAULT_STATEMENT_TIMEOUT_MS
        ),
        lock_timeout_ms=(
            parse_duration_ms(lock_timeout, "KPICTL_LOCK_TIMEOUT")
            if lock_timeout
            else DEFAULT_LOCK_TIMEOUT_MS
        ),
        source_timezone=_source_timezone(zone.value, zone.origin),
        source_timezone_origin=zone.origin,
        stop_grace_seconds=_stop_grace_seconds(env.get("KPICTL_STOP_GRACE_SECONDS")),
        data_dir=Path(data_dir) if data_dir else None,
        verbose=verbose,
        quiet=quiet,
        log_format=log_format,
        argv=argv,
        config=config,
        chosen=chosen_settings(config, env),
        read_target=resolve_read_target(flag_read_url, env, command),
    )


def _source_timezone(name: str, origin: str) -> str:
    """The source time zone, checked with the rule of --timezone; its error names where it came
    from (KPICTL_SOURCE_TIMEZONE or the config file)."""
    source = origin if origin.startswith("KPICTL_") else f"source_timezone from {origin}"
    try:
        time_zone(name, source)
    except UsageError as exc:
        raise ConfigurationError(exc.message) from None
    return name


def _stop_grace_seconds(value: str | None) -> float:
    if not value:
        return DEFAULT_STOP_GRACE_SECONDS
    return duration_seconds(value, "KPICTL_STOP_GRACE_SECONDS")
