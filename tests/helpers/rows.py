"""Row MACs for service tests that build AccessControl on a bare database (no Workspace)."""

from __future__ import annotations

import sqlalchemy as sa

from bastion.security.rows import RowMac, seal_missing
from tests.helpers.audit import shared_keyring


def sealed_rows(engine: sa.Engine) -> RowMac:
    """The shared test keyring's row MAC, with the rows migrations seeded sealed, as
    ``Workspace.init`` seals them."""
    rows = RowMac.of(shared_keyring())
    with engine.begin() as conn:
        seal_missing(conn, rows)
    return rows
