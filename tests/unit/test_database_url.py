"""Which database URL a command uses (`kpictl/settings.py`: flag, environment, files, systemd
credentials, else the embedded server) and how passwords are masked (`kpictl/redact.py`); no
database. What the commands do with a bad or unreachable URL: tests/cli/test_connection.py and
tests/cli/test_errors.py."""

from __future__ import annotations

import pytest

from kpictl.errors import ConfigurationError
from kpictl.redact import mask_url, redact, secrets_of_url
from kpictl.settings import EMBEDDED, resolve_target

PSYCOPG = "postgresql+psycopg://"


def test_flag_wins_over_everything(tmp_path):
    url_file = tmp_path / "url"
    url_file.write_text("postgresql://f/file\n")
    env = {
        "KPICTL_DATABASE_URL": "postgresql://a/kpictl_env",
        "DATABASE_URL": "postgresql://b/database_env",
        "KPICTL_DATABASE_URL_FILE": str(url_file),
    }
    target = resolve_target("postgresql://flag/db", env)
    assert (target.source, target.url) == ("--database-url", PSYCOPG + "flag/db")


@pytest.mark.parametrize(
    ("present", "expected_source", "expected_url"),
    [
        (
            {"KPICTL_DATABASE_URL", "DATABASE_URL", "FILE", "CREDS"},
            "KPICTL_DATABASE_URL",
            "a/kpictl_env",
        ),
        ({"DATABASE_URL", "FILE", "CREDS"}, "DATABASE_URL", "b/database_env"),
        ({"FILE", "CREDS"}, "KPICTL_DATABASE_URL_FILE", "f/file"),
        ({"CREDS"}, "credential", "c/credential"),
        (set(), EMBEDDED, None),
    ],
)
def test_resolution_order(tmp_path, present, expected_source, expected_url):
    url_file = tmp_path / "url"
    url_file.write_text("postgres://f/file\n")
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "database-url").write_text("postgres://c/credential")
    env = {
        "KPICTL_DATABASE_URL": "postgresql://a/kpictl_env",
        "DATABASE_URL": "postgres://b/database_env",
        "FILE": str(url_file),
        "CREDS": str(creds),
    }
    environ = {key: value for key, value in env.items() if key in present}
    if "FILE" in environ:
        environ["KPICTL_DATABASE_URL_FILE"] = environ.pop("FILE")
    if "CREDS" in environ:
        environ["CREDENTIALS_DIRECTORY"] = environ.pop("CREDS")
    target = resolve_target(None, environ)
    assert target.source.startswith(expected_source)
    assert target.url == (PSYCOPG + expected_url if expected_url else None)


def test_credentials_directory_without_the_credential_is_an_error_naming_it(tmp_path):
    with pytest.raises(ConfigurationError, match=r"\(.*\) has no database-url credential"):
        resolve_target(None, {"CREDENTIALS_DIRECTORY": str(tmp_path)})


@pytest.mark.parametrize(
    "url",
    [
        "postgres://u:p@h:5432/d",
        "postgresql://u:p@h/d",
        "postgresql+psycopg2://u:p@h/d",
        "POSTGRES://h/d",
    ],
)
def test_postgres_schemes_become_psycopg3(url):
    assert resolve_target(url, {}).url.startswith(PSYCOPG)


@pytest.mark.parametrize("url", ["mysql://u:p@h/d", "h:5432/d", "sqlite:///x.db", ""])
def test_other_schemes_rejected(url):
    # "" too: an empty --database-url is a usage error, not the embedded server (issue 12)
    with pytest.raises(ConfigurationError):
        resolve_target(url, {})


def test_redaction_forms():
    url = "postgresql://kpi:s3cr%40t@db:5432/x?sslmode=require&password=other"
    secrets = secrets_of_url(url)
    assert "s3cr@t" in secrets and "other" in secrets
    shown = mask_url(url)
    assert "s3cr" not in shown and "other" not in shown and "kpi:***@db" in shown
    assert redact("host=db password='a b c' user=kpi") == "host=db password=*** user=kpi"


def test_redaction_masks_a_password_with_an_at_sign():
    assert redact("postgresql://kpi:Sec@ret99@db:5432/x") == "postgresql://kpi:***@db:5432/x"
    assert secrets_of_url("postgresql://kpi:Sec@ret99@db/x") == ["Sec@ret99"]


def test_unset_variables_still_mean_embedded():
    assert resolve_target(None, {}).is_embedded


def test_good_urls_still_parse():
    for url in (
        "postgresql://u:p@db:5432/x?sslmode=require&application_name=a",
        "postgresql://u@[::1]:5432/x",
        "postgresql://postgres@/postgres?host=/tmp/socket-dir",
        "postgresql://u:p%2Cq@db/x",  # a comma in the password is not a host list
    ):
        assert resolve_target(url, {}).url.startswith("postgresql+psycopg://")
