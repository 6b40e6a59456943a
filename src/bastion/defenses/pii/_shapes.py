"""Value shapes shared by the PII scan, the masking helpers and the generalize policy."""

from __future__ import annotations

__all__ = ["IPV4", "ISO_DATE"]

_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
#: A dotted IPv4 address, each number 0-255.
IPV4 = rf"{_OCTET}(?:\.{_OCTET}){{3}}"
#: An ISO 8601 date (groups: year, month, day), with an optional time and zone.
ISO_DATE = (
    r"(\d{4})[-/.](\d{1,2})[-/.](\d{1,2})"
    r"(?:[T ]\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?)?"
)
