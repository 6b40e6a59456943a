"""The one HTML page both the model card and the run report are written into: inline CSS,
a Content-Security-Policy that forbids scripts, images only as ``data:`` URIs.

The policy's ``img-src data:`` blocks any image loaded from a file or a URL, so such an
image would be a broken picture in every browser. :func:`html_page` therefore refuses a
body holding an ``<img>`` whose ``src`` is not a ``data:image/`` URI, a ``srcset``, or an
element that loads a resource of its own (``<script>``, ``<iframe>``, ``<object>``,
``<embed>``, ``<source>``, ``<link>``): the mistake fails when the page is built, not when
someone opens it.
"""

from __future__ import annotations

import html
from html.parser import HTMLParser

__all__ = ["html_page"]

_CSS = """
body{font:15px/1.5 system-ui,-apple-system,'Segoe UI',sans-serif;color:#1b1f24;
max-width:60rem;margin:2rem auto;padding:0 1rem}
h1{font-size:1.6rem;border-bottom:2px solid #d0d7de;padding-bottom:.3rem}
h2{font-size:1.2rem;margin-top:2rem;border-bottom:1px solid #d0d7de}
table{border-collapse:collapse;margin:.6rem 0;font-size:.92rem}
th,td{border:1px solid #d0d7de;padding:.25rem .6rem;text-align:left;vertical-align:top}
th{background:#f6f8fa} code,pre{font-family:ui-monospace,Menlo,Consolas,monospace}
pre{background:#f6f8fa;padding:.7rem;overflow-x:auto}
.pass{color:#1a7f37;font-weight:600}.fail{color:#cf222e;font-weight:600}
.warn{color:#9a6700;font-weight:600}
img{max-width:100%;height:auto}
"""
_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"
_LOADERS = frozenset({"script", "iframe", "object", "embed", "source", "link", "frame"})


def html_page(title: str, body: str) -> str:
    """A self-contained HTML page: inline CSS, no scripts allowed, images as data URIs.

    ``title`` is escaped here; ``body`` must already be safe HTML. Raises ``ValueError``
    (a bug in the caller, never a user's input) when ``body`` loads anything from outside
    the page: an ``<img>`` not given as a ``data:image/`` URI, a ``srcset``, a script, a
    frame, an object or a link element.
    """
    _EmbeddedOnly().check(body)
    title = html.escape(str(title), quote=True)
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{title}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
        f"{body}\n</body>\n</html>\n"
    )


class _EmbeddedOnly(HTMLParser):
    """Walks a page body and raises on the first element that would load from outside."""

    def check(self, body: str) -> None:
        self.feed(body)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        where = "line {}, column {}".format(*self.getpos())
        if tag in _LOADERS:
            raise ValueError(f"html_page: <{tag}> at {where} loads from outside the page")
        names = {name for name, _ in attrs}
        if "srcset" in names:
            raise ValueError(f"html_page: <{tag} srcset> at {where}: images must be data: URIs")
        if tag == "img":
            src = dict(attrs).get("src") or ""
            if not src.strip().lower().startswith("data:image/"):
                raise ValueError(
                    f"html_page: <img> at {where} has src {src[:60]!r}; the page's"
                    " Content-Security-Policy allows only data:image/ URIs (embed the image)"
                )

    handle_startendtag = handle_starttag
