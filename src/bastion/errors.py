"""The one error tree of Bastion.

Every error Bastion raises on purpose derives from :class:`Error`, and where a built-in
fits it derives from that too, so ``except ValueError`` keeps working::

    Error
    ├── ConfigError(ValueError)         bad input from a user: a file, key, flag or value
    │   ├── NotFound(LookupError)       a named thing (artifact, key, principal, token) is absent
    │   └── DataError                   input data broke its declared schema (rows and columns)
    ├── IntegrityError                  stored bytes, a signature or a chain failed verification
    │   ├── PinMismatch(ConfigError)    an input's bytes differ from its pinned SHA-256 (exit 1)
    │   ├── UnknownKeyError             a blob or envelope names a key the keyring lacks
    │   ├── SignatureError              a DSSE signature did not verify
    │   ├── ForgedRow                   a metadata row's MAC does not check: written outside Bastion
    │   │   └── ForgedCredential(AuthError, AccessDenied)   ... a token's own rows (401, exit 1)
    │   └── AuditChainError             the audit log was edited, truncated or forked
    ├── AuthError                       a wrong passphrase, token or credential (one bland message)
    │   └── MissingCredential           no token given at all: usage (exit 2)
    ├── AccessDenied(PermissionError)   an authenticated principal may not do this
    ├── AuditError(RuntimeError)        the audit log could not record an action; the action fails
    ├── KeyringError                    key lifecycle misuse (retiring a key in use, ...)
    ├── StateError(RuntimeError)        the home is missing, locked, or of another version
    └── GateFailed                      a check or release gate failed (exit code 1)
        └── EvaluationFailed            a model's signed evaluation failed, not overridden

Exit codes (``exit_code`` on each class; the CLI exits with it, README "Exit codes"):

* 0 -- ok.
* 1 -- a check, gate or access failed: :class:`AccessDenied`, :class:`AuthError` (an
  invalid, expired or revoked token, a wrong passphrase), :class:`IntegrityError` with
  :class:`PinMismatch` (data that changed under its pin is a failed check, not a typo),
  :class:`GateFailed`, :class:`AuditError`, :class:`KeyringError`, and every failed
  ``verify``.
* 2 -- bad usage or input: :class:`ConfigError` (with :class:`NotFound` and
  :class:`DataError`), :class:`StateError` (no home, a locked one, no passphrase set),
  :class:`MissingCredential` (no token set) and click's usage errors.

The rule: 2 when the caller can fix the command line, the files or the environment it
gave; 1 when what was given was well formed and Bastion checked it and said no. Messages
are one line. Secrets never appear in them.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = [
    "AccessDenied",
    "AuditChainError",
    "AuditError",
    "AuthError",
    "ConfigError",
    "DataError",
    "Error",
    "EvaluationFailed",
    "ForgedCredential",
    "ForgedRow",
    "GateFailed",
    "IntegrityError",
    "KeyringError",
    "MissingCredential",
    "NotFound",
    "PinMismatch",
    "SignatureError",
    "StateError",
    "UnknownKeyError",
]


class Error(Exception):
    """Root of every error Bastion raises on purpose."""

    exit_code: int = 1


class ConfigError(Error, ValueError):
    """Bad input from a user; the message names the key, field or file and what was expected."""

    exit_code = 2


class NotFound(ConfigError, LookupError):
    """A named artifact, key, principal, token or record does not exist."""


class DataError(ConfigError):
    """Input data broke its declared schema; ``failures`` names rows and columns."""

    def __init__(self, message: str, failures: list[str] | None = None) -> None:
        super().__init__(message)
        self.failures = list(failures or [])


class IntegrityError(Error):
    """Stored bytes, a signature, a statement or a hash chain failed verification."""


class PinMismatch(IntegrityError, ConfigError):
    """An input's bytes do not match the SHA-256 the configuration pins: a failed check
    (exit 1); still a ``ValueError`` for callers that catch bad input."""

    exit_code = 1


class UnknownKeyError(IntegrityError):
    """A blob or envelope names a key id that the keyring does not hold."""


class SignatureError(IntegrityError):
    """A signature did not verify against any trusted key."""


class ForgedRow(IntegrityError):
    """A metadata row (token, grant, model record, ...) does not match its MAC: it was
    written or edited by something that lacks the passphrase. ``table`` and ``key`` name it."""

    def __init__(self, message: str, table: str = "", key: str = "") -> None:
        super().__init__(message)
        self.table = table
        self.key = key


class AuditChainError(IntegrityError):
    """The audit log does not verify: an entry was edited, removed, inserted or reordered.

    ``problems`` lists every finding (each names the sequence number it concerns).
    """

    def __init__(self, message: str, problems: Sequence[object] = ()) -> None:
        super().__init__(message)
        self.problems = list(problems)


class AuthError(Error):
    """A passphrase, token or credential was not accepted (exit 1, access failed).
    Deliberately says nothing more."""

    exit_code = 1


class MissingCredential(AuthError):
    """No token was given at all (``BASTION_TOKEN``/``BASTION_TOKEN_FILE`` unset or
    unreadable): bad usage (exit 2), unlike a token that was given and refused."""

    exit_code = 2


class AccessDenied(Error, PermissionError):
    """An authenticated principal is not allowed to perform this action."""

    exit_code = 1


class AuditError(Error, RuntimeError):
    """The audit log could not record an action, so the action did not take effect."""


class KeyringError(Error):
    """A key lifecycle rule was broken, such as retiring a key that still protects data."""


class StateError(Error, RuntimeError):
    """The home folder is missing, locked, or was written by an incompatible version."""

    exit_code = 2


class GateFailed(Error):
    """A check or release gate failed. Carries the failures for reports."""

    def __init__(self, message: str, failures: list[str] | None = None) -> None:
        super().__init__(message)
        self.failures = list(failures or [])


class EvaluationFailed(GateFailed):
    """A model's newest signed evaluation failed its gates and no approver overrode it:
    the server will not serve it (exit 1)."""


class ForgedCredential(ForgedRow, AuthError, AccessDenied):
    """A token was refused because a row it rests on (the token, its principal, a grant of
    the principal, the role's permissions) does not match its MAC: 401 at the server,
    :class:`AccessDenied` in the API, exit code 1 at the CLI."""

    exit_code = 1
