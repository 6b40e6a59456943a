"""The home folder on disk: its layout, its format marker, making one and reading one, and
where the passphrase, token and database come from when the caller does not pass them.

A home (``BASTION_HOME``, default ``./.bastion``, mode 0700) holds::

    home.json       format marker and which database the home uses (never a password)
    keyring.json    the keyring, sealed under the passphrase (see security.keys)
    audit-anchor.json  the audit log's newest tree head, signed (see security.anchor)
    access-state.json  the current access-control rows, sealed (see security.access_state)
    bastion.db      the metadata database, unless BASTION_DATABASE_URL names PostgreSQL
    objects/        encrypted, content-addressed blobs (see docs/formats/artifact.md)
    tmp/            half-written blobs; never read
    lock            held while the keys are rotated

:func:`create_home` and :func:`open_home` deal with the files only (folders, marker,
keyring, the database's schema); :class:`bastion.workspace.Workspace` opens the services
on what they return, which is the public entry (``Workspace.init`` / ``Workspace.open``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

from bastion._fs import atomic_write
from bastion.errors import ConfigError, IntegrityError, MissingCredential, StateError
from bastion.security.keys import LocalKeyring
from bastion.store.db import make_engine, migrate, sqlite_url

if TYPE_CHECKING:
    from sqlalchemy.engine import URL

__all__ = [
    "ENV_DATABASE",
    "ENV_HOME",
    "ENV_PASSPHRASE",
    "ENV_TOKEN",
    "ENV_TOKEN_FILE",
    "HOME_FORMAT",
    "HOME_VERSION",
    "create_home",
    "default_home",
    "open_home",
    "passphrase_from_env",
    "token_from_env",
]

HOME_FORMAT = "bastion-home"
HOME_VERSION = 1
ENV_HOME = "BASTION_HOME"
ENV_PASSPHRASE = "BASTION_MASTER_KEY"  # noqa: S105 - the name of the variable, not a secret
ENV_TOKEN = "BASTION_TOKEN"  # noqa: S105 - the name of the variable, not a secret
ENV_TOKEN_FILE = "BASTION_TOKEN_FILE"  # noqa: S105 - the name of the variable, not a secret
ENV_DATABASE = "BASTION_DATABASE_URL"


def default_home() -> Path:
    return Path(os.environ.get(ENV_HOME, ".bastion"))


def passphrase_from_env() -> str:
    """The passphrase from ``BASTION_MASTER_KEY``; a StateError if it is not set."""
    value = os.environ.get(ENV_PASSPHRASE)
    if not value:
        raise StateError(f"no passphrase: set {ENV_PASSPHRASE} or run interactively")
    return value


def token_from_env() -> str:
    """The caller's API token, from ``BASTION_TOKEN`` or the file ``BASTION_TOKEN_FILE``;
    a MissingCredential (an AuthError, exit 2: usage) if neither gives one. The CLI and
    the Python API both read it here."""
    value = os.environ.get(ENV_TOKEN)
    path = os.environ.get(ENV_TOKEN_FILE)
    if not value and path:
        try:
            value = Path(path).read_text().strip()
        except OSError:
            raise MissingCredential(f"{ENV_TOKEN_FILE}: cannot read {path}") from None
    if not value:
        raise MissingCredential(
            f"no token: pass token= or set {ENV_TOKEN} (`bastion init` printed the admin's);"
            " the passphrase opens the keys, the token says who you are"
        )
    return value


def create_home(
    home: Path, passphrase: str, database_url: str | None, *, scrypt_log_n: int
) -> tuple[LocalKeyring, str | URL, str]:
    """Make the folders, the keyring and the database schema, then write the marker last;
    ``(keyring, database URL, "sqlite" | "external")``. ConfigError for a home that
    exists and is not empty."""
    if home.exists() and any(home.iterdir()):
        raise ConfigError(f"{home}: already exists and is not empty; choose another home")
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(home, 0o700)
    for sub in ("objects", "tmp"):
        (home / sub).mkdir(mode=0o700, exist_ok=True)
    keyring = LocalKeyring.create(home / "keyring.json", passphrase, scrypt_log_n=scrypt_log_n)
    url = database_url or sqlite_url(home.resolve() / "bastion.db")
    engine = make_engine(url)
    try:
        migrate(engine)
    finally:
        engine.dispose()
    database = "sqlite" if database_url is None else "external"
    marker = {"format": HOME_FORMAT, "version": HOME_VERSION, "database": database}
    atomic_write(home / "home.json", json.dumps(marker, indent=1).encode() + b"\n")
    return keyring, url, database


def open_home(
    home: Path, passphrase: str | None, database_url: str | None
) -> tuple[LocalKeyring, str | URL]:
    """Check the marker, unlock the keyring (``passphrase`` None: from the environment)
    and find the database; ``(keyring, database URL)``."""
    try:
        marker = json.loads((home / "home.json").read_text())
    except FileNotFoundError:
        raise StateError(f"{home}: not a Bastion home (run `bastion init`)") from None
    except ValueError:
        raise IntegrityError(f"{home / 'home.json'}: not valid JSON") from None
    if marker.get("format") != HOME_FORMAT or marker.get("version") != HOME_VERSION:
        raise StateError(f"{home}: written by an incompatible Bastion version")
    passphrase = passphrase if passphrase is not None else passphrase_from_env()
    keyring = LocalKeyring.open(home / "keyring.json", passphrase)
    if marker.get("database") == "external":
        external = database_url or os.environ.get(ENV_DATABASE)
        if not external:
            raise StateError(f"{home}: this home's database is external; set {ENV_DATABASE}")
        return keyring, external
    return keyring, sqlite_url(home.resolve() / "bastion.db")
