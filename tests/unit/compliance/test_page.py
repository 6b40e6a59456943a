"""The page both reports are written into refuses anything its own Content-Security-Policy
would block: an image that is not a data: URI would be a broken picture in every browser."""

from __future__ import annotations

import pytest

from bastion.compliance.page import html_page

PNG = "data:image/png;base64,iVBORw0KGgo="


def test_an_embedded_image_is_accepted() -> None:
    page = html_page("t", f'<h2>x</h2><figure><img alt="a" src="{PNG}"></figure>')
    assert f'src="{PNG}"' in page
    assert "img-src data:" in page


@pytest.mark.parametrize(
    "src",
    [
        "screen_train.png",
        "file:///tmp/plot.png",
        "https://example.org/plot.png",
        "//example.org/p.png",
        "data:text/html;base64,PHNjcmlwdD4=",
        "",
    ],
)
def test_an_image_linked_by_path_or_url_is_refused(src: str) -> None:
    with pytest.raises(ValueError, match=r"<img> at line 2, column 0 .*data:image/"):
        html_page("t", f'<p>ok</p>\n<img alt="plot" src="{src}">')


def test_an_image_without_src_is_refused() -> None:
    with pytest.raises(ValueError, match="<img>"):
        html_page("t", '<img alt="plot"/>')


@pytest.mark.parametrize(
    "body",
    [
        f'<img src="{PNG}" srcset="big.png 2x">',
        '<picture><source srcset="a.png"></picture>',
        '<script src="x.js"></script>',
        '<iframe src="other.html"></iframe>',
        '<link rel="stylesheet" href="s.css">',
        '<object data="x.svg"></object>',
    ],
)
def test_anything_else_that_loads_from_outside_is_refused(body: str) -> None:
    with pytest.raises(ValueError, match="html_page"):
        html_page("t", body)


def test_escaped_markup_in_text_is_not_mistaken_for_an_image() -> None:
    page = html_page("t", "<p>&lt;img src=&quot;x.png&quot;&gt;</p>")
    assert "&lt;img" in page
