"""PII detection: which columns of a table look like personal data.

**Detection.** :func:`scan_table` looks at each column twice and returns :class:`PiiHit`
records (never a raw value; examples pass through :func:`mask` first):

- its *values*: a seeded sample of at most ``sample_rows`` non-null values (blanks not
  counted) is matched with vectorised pandas regexes, each value counted for one pattern at
  most: ``email``; ``iban`` (mod-97 checked); ``ip`` (v4, and v6 checked by
  :mod:`ipaddress`); ``card`` (12-19 digits, Luhn checked); ``ssn`` (US, dashed, impossible
  ranges refused); dates; and ``phone`` (7-16 digits with a leading ``+``/``0``/``(`` or at
  least two separators). A pattern is a hit when at least ``min_fraction`` of the sample
  matches. Dates count as ``date_of_birth`` by values alone only when their years are
  plausible birth years *and* spread like a population's (interquartile range ≥ 15
  years): ``signup_date`` clusters within a few years and is not flagged. Integer columns
  are checked for card numbers only (Luhn refuses nine random numbers in ten, so ids and
  weights pass); SSNs and phone numbers written as bare numbers are found by name only.
- its *name*, split into words (``dateOfBirth`` → ``date_of_birth``), whose last word says
  what it holds: ``email``, ``phone``/``tel``/``mobile``, ``ssn``/``social_security``,
  ``iban``, ``credit_card``/``card_number``, ``ip``/``ip_address``, ``dob``/``birth_date``,
  and people's names (``name``, ``first_name``, ``surname``, ...). People's names are found
  by column name only: as values, "White" or "Never-married" look just like a surname. Any
  other ``*_name`` column (not ``file_name``, ``company_name``, ...) counts when at least
  ``min_fraction`` of its values have the shape of a person's name.

``PiiHit.by`` says which look found it (``values``, ``name`` or ``both``).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import numpy as np
import pandas as pd

from bastion.defenses.findings import Finding
from bastion.defenses.pii._shapes import IPV4, ISO_DATE
from bastion.defenses.pii.masking import mask
from bastion.errors import ConfigError

__all__ = ["PATTERNS", "PiiHit", "scan_table"]

#: Every pattern a hit can name, in the order hits are reported.
PATTERNS: tuple[str, ...] = (
    "email",
    "phone",
    "ssn",
    "iban",
    "card",
    "ip",
    "date_of_birth",
    "name",
)

_DETECTOR = "pii"
_EXAMPLES = 3
_MIN_BIRTH_SPREAD = 15.0  # years between the quartiles of birth years
_MAX_AGE = 120

# -- column names: the last word(s) of the name say what the column holds -----------------

_NUMBER = r"(?:_?(?:no|nr|num|number|numbers))?"
_BY_NAME: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (pattern, re.compile(rx))
    for pattern, rx in (
        ("email", r"_e_?mails?(?:_?addr(?:ess)?(?:es)?)?_$"),
        ("phone", rf"_(?:(?:home|work|office|cell|mobile|tele|contact)?_?phones?|tel|fax|msisdn)"
                  rf"{_NUMBER}_$|^_(?:mobile|cell)_$|_(?:mobile|cell)_?(?:no|nr|num|number)_$"),
        ("ssn", rf"_(?:ssn|socsec|social_security|social_sec|national_id|nino){_NUMBER}_$"),
        ("iban", rf"_(?:iban|bank_account){_NUMBER}_$"),
        ("card", r"_(?:(?:credit|debit)_?cards?(?:_?(?:no|nr|num|number))?"
                 r"|card_?(?:no|nr|num|number)|cc_?(?:no|num|number)|ccn)_$"),
        ("ip", r"_(?:ip|ipv4|ipv6|ip_?addr(?:ess)?|remote_?addr(?:ess)?)_$"),
        ("date_of_birth", r"_(?:dob|birth_?(?:date|day|dt)|(?:date|day)_of_birth|born_on)_$"),
    )
)  # fmt: skip
_PERSON_NAME = re.compile(  # "name" alone, or a name that says it is a person's
    r"^_name_$"
    r"|_(?:first|last|given|family|middle|maiden|full|fore|sur|nick)_?names?_$"
    r"|_(?:person|customer|patient|employee|client|contact|holder|cardholder|applicant"
    r"|member|user)_?names?_$"
)
_OTHER_NAME = re.compile(r"_(?P<what>[a-z0-9]+)_?name_$")
_NOT_PEOPLE = re.compile(  # what else a "*_name" column names
    r"file|column|col|table|host|domain|server|product|company|brand|model|device|app|event"
    r"|field|key|type|class|category|dataset|feature|city|country|street|state|region|project"
    r"|team|org|organization|department|dept|item|pipeline|stage|job|task|branch|bank|unit"
    r"|display|screen|node|database|db|schema|index|tag|label|image|font|package|module"
)

# -- values ---------------------------------------------------------------------------------
# Plain syntax only (no look-around): pandas runs these with RE2 on Arrow strings.

_EMAIL = r"[A-Za-z0-9._%+\-]+@(?:[A-Za-z0-9\-]+\.)+[A-Za-z]{2,24}"
_IBAN = r"[A-Z]{2}\d{2}[A-Z0-9]{11,30}"
_IPV6_SHAPE = r"[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*"
_CARD = r"\d(?:[ \-]?\d){11,18}"
_SSN = r"\d{3}-\d{2}-\d{4}"
_DMY_DATE = r"(\d{1,2})[-/.](\d{1,2})[-/.](\d{4})"
_PHONE = r"(?:\+|00)?[\d(][\d\s().\-]{5,24}\d"
_EXTENSION = r"(?i)\s*(?:x|ext\.?|#)\s*\d{1,6}$"
_UPPER = "A-ZÀ-ÖØ-Þ"
_WORD = f"[{_UPPER}][{_UPPER}a-zß-öø-ÿ'’\\-]*\\.?"
_PARTICLE = r"(?:de|del|della|der|di|da|dos|du|la|le|van|von|bin|al|ten|ter)"
_PERSON = (
    r"(?:(?:Mr|Mrs|Ms|Miss|Mx|Dr|Prof|Sir|Dame)\.?\s+)?"
    f"{_WORD}(?:\\s+(?:{_PARTICLE}\\s+)*{_WORD}){{0,3}}"
    r"(?:,?\s+(?:Jr|Sr|II|III|IV|MD|PhD|DDS|DVM|Esq)\.?)?"
)


@dataclass(frozen=True, slots=True)
class PiiHit:
    """One column that looks like it holds one kind of personal data.

    ``matched`` of the ``checked`` sampled non-blank values fit ``pattern`` (``fraction``
    is their share, 0 when nothing was checked); ``examples`` are masked; ``by`` says
    whether the values, the column name or both gave it away.
    """

    column: str
    pattern: str
    matched: int
    checked: int
    fraction: float
    examples: tuple[str, ...]
    by: Literal["values", "name", "both"]

    def describe(self) -> str:
        """One line for a message: the column, the pattern, how much matched, examples."""
        share = f"{self.fraction:.1%} of {self.checked:,} sampled values"
        found = {
            "values": f"{share} match",
            "name": f"by its column name; {share} match",
            "both": f"by its column name, and {share} match",
        }[self.by]
        shown = f", e.g. {', '.join(self.examples)}" if self.examples else ""
        return f"column {self.column!r} looks like {self.pattern} ({found}{shown})"

    def to_json(self) -> dict[str, Any]:
        """The hit as JSON types; ``fraction`` rounded to 4 places."""
        return {
            "column": self.column,
            "pattern": self.pattern,
            "matched": self.matched,
            "checked": self.checked,
            "fraction": round(self.fraction, 4),
            "examples": list(self.examples),
            "by": self.by,
        }

    def to_finding(self) -> Finding:
        """The hit as a column :class:`Finding` (reason ``pii_<pattern>``, score = fraction)."""
        return Finding(
            None, _DETECTOR, f"pii_{self.pattern}", self.fraction, self.describe(), self.column
        )


# -- scanning -------------------------------------------------------------------------------


def scan_table(
    df: pd.DataFrame,
    *,
    sample_rows: int = 20_000,
    min_fraction: float = 0.3,
    seed: int = 0,
    skip: Collection[str] = (),
) -> list[PiiHit]:
    """Every column of ``df`` that looks like personal data, in column order.

    Each column is judged on its name and on a sample of at most ``sample_rows`` of its
    non-null values (drawn with ``seed``; blank strings are then not counted); a value
    pattern counts when at least ``min_fraction`` of the sample matches. Columns named in
    ``skip`` are not looked at.
    """
    if sample_rows < 1:
        raise ConfigError(f"sample_rows: expected at least 1, got {sample_rows}")
    if not 0 < min_fraction <= 1:
        raise ConfigError(f"min_fraction: expected a share in (0, 1], got {min_fraction}")
    skipped = {str(c) for c in skip}
    hits: list[PiiHit] = []
    for i, column in enumerate(df.columns):
        if str(column) not in skipped:
            hits.extend(_scan_column(str(column), df.iloc[:, i], sample_rows, min_fraction, seed))
    return hits


def _words(column: str) -> str:
    """``"dateOfBirth"`` → ``"_date_of_birth_"``: lower-case words joined and framed by ``_``."""
    text = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", column)
    text = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", text)
    return "_" + "_".join(re.findall(r"[a-z0-9]+", text.lower())) + "_"


def _named(column: str) -> tuple[set[str], bool]:
    """Patterns the column name points at, and whether it is some other ``*_name``."""
    words = _words(column)
    found = {pattern for pattern, rx in _BY_NAME if rx.search(words)}
    if _PERSON_NAME.search(words):
        found.add("name")
        return found, False
    other = _OTHER_NAME.search(words)
    return found, other is not None and not _NOT_PEOPLE.fullmatch(other["what"])


def _scan_column(
    column: str, series: pd.Series, sample_rows: int, min_fraction: float, seed: int
) -> list[PiiHit]:
    named, maybe_person = _named(column)
    values = series.dropna()
    if len(values) > sample_rows:
        values = values.sample(n=sample_rows, random_state=seed)
    dtype = values.dtype
    text: pd.Series
    matches: dict[str, pd.Series] = {}
    dob_spread = False
    if pd.api.types.is_bool_dtype(dtype) or pd.api.types.is_float_dtype(dtype):
        text = values.astype("str")
    elif pd.api.types.is_integer_dtype(dtype):
        text = values.astype("str")
        matches["card"] = _card(text)
    elif pd.api.types.is_datetime64_any_dtype(dtype):
        text = values.astype("str")
        years = values.dt.year.astype("float64") + (values.dt.month.astype("float64") - 1) / 12
        matches["date_of_birth"], dob_spread = _births(years)
    else:
        text = values.astype("str").str.strip()
        text = text[text != ""]
        matches, dob_spread = _match_distinct(text)
        if "name" in named or maybe_person:
            matches["name"] = text.str.fullmatch(_PERSON)
    checked = len(text)
    hits = []
    for pattern in PATTERNS:
        m = matches.get(pattern)
        matched = 0 if m is None else int(m.sum())
        fraction = matched / checked if checked else 0.0
        fits = matched > 0 and fraction >= min_fraction
        by: Literal["values", "name", "both"]
        if pattern in named:
            by = "both" if fits else "name"
        elif pattern == "name" and maybe_person and fits:
            by = "both"  # a person's name is never inferred from values alone
        elif fits and pattern != "name" and (pattern != "date_of_birth" or dob_spread):
            by = "values"
        else:
            continue
        some = text if m is None or not matched else text[m]  # a name hit shows what it holds
        masked = dict.fromkeys(map(mask, some.drop_duplicates()[: 10 * _EXAMPLES]))
        shown = tuple(masked)[:_EXAMPLES]
        hits.append(PiiHit(column, pattern, matched, checked, fraction, shown, by))
    return hits


def _match_distinct(text: pd.Series) -> tuple[dict[str, pd.Series], bool]:
    """:func:`_match_text`, run once per distinct value when values repeat (a category
    column of 20,000 values may hold 20 distinct ones) and spread back to every value."""
    codes, uniques = pd.factorize(text)
    if 2 * len(uniques) >= len(text):
        return _match_text(text)
    distinct = pd.Series(np.asarray(uniques, dtype=object), dtype=text.dtype)
    found, _spread = _match_text(distinct)
    spread_back = {
        k: pd.Series(v.to_numpy(dtype=bool)[codes], index=text.index) for k, v in found.items()
    }
    years = pd.Series(_date_years(distinct).to_numpy(dtype="float64")[codes], index=text.index)
    return spread_back, _births(years)[1]


def _match_text(text: pd.Series) -> tuple[dict[str, pd.Series], bool]:
    """A mask per pattern over ``text`` (each value taken by the first pattern that fits)
    and whether the birth-date candidates spread like a population's birth years."""
    free = pd.Series(True, index=text.index)
    found: dict[str, pd.Series] = {}

    def take(pattern: str, fits: pd.Series) -> None:
        nonlocal free
        found[pattern] = fits.astype(bool) & free
        free = free & ~found[pattern]

    take("email", text.str.fullmatch(_EMAIL))
    take("iban", _iban(text.str.replace(" ", "", regex=False).str.upper()))
    take("ip", text.str.fullmatch(IPV4) | _ipv6(text))
    take("card", _card(text))
    shaped_ssn = text.str.fullmatch(_SSN)
    take("ssn", shaped_ssn & _possible_ssn(text))
    free = free & ~shaped_ssn  # 3-2-4 digits are never a phone number
    years = _date_years(text)
    births, spread = _births(years)
    take("date_of_birth", births)
    free = free & years.isna()  # other dates are not phone numbers either
    take("phone", _phone(text))
    return found, spread


def _iban(compact: pd.Series) -> pd.Series:
    """IBAN shape and the mod-97 check (ISO 13616), computed once per distinct candidate."""
    shaped = compact.str.fullmatch(_IBAN)
    candidates = compact[shaped]
    good = {v for v in candidates.unique() if _mod97(v)}
    return shaped & compact.isin(good)


def _mod97(iban: str) -> bool:
    moved = iban[4:] + iban[:4]
    return int("".join(str(int(ch, 36)) for ch in moved)) % 97 == 1


def _ipv6(text: pd.Series) -> pd.Series:
    shaped = text.str.fullmatch(_IPV6_SHAPE) & (text.str.len() <= 45)
    good = set()
    for value in text[shaped].unique():
        try:
            ipaddress.IPv6Address(value)
        except ValueError:
            continue
        good.add(value)
    return shaped & text.isin(good)


def _card(text: pd.Series) -> pd.Series:
    """12-19 digits (spaces or dashes allowed) that pass the Luhn check."""
    shaped = text.str.fullmatch(_CARD) & text.str.contains(r"[1-9]")  # all zeros pass Luhn
    digits = text[shaped].str.replace(r"[ \-]", "", regex=True)
    ok = pd.Series(False, index=text.index)
    if len(digits):
        ok[digits.index] = _luhn(digits)
    return ok


def _luhn(digits: pd.Series) -> np.ndarray:
    """The Luhn check over strings of at most 19 digits, vectorised (leading zeros are free)."""
    width = 19
    raw = "".join(digits.str.zfill(width).tolist()).encode("ascii")
    d = np.frombuffer(raw, dtype=np.uint8).reshape(-1, width).astype(np.int64) - ord("0")
    doubled = d[:, width - 2 :: -2] * 2
    total = d[:, width - 1 :: -2].sum(axis=1) + (doubled - 9 * (doubled > 9)).sum(axis=1)
    return np.asarray(total % 10 == 0)


def _possible_ssn(text: pd.Series) -> pd.Series:
    """Of ``AAA-GG-SSSS``: area not 000, 666 or 9xx; group not 00; serial not 0000."""
    area, group, serial = text.str.slice(0, 3), text.str.slice(4, 6), text.str.slice(7, 11)
    return (
        ~area.isin(["000", "666"])
        & ~area.str.startswith("9")
        & (group != "00")
        & (serial != "0000")
    )


def _date_years(text: pd.Series) -> pd.Series:
    """Fractional year of each value that is a date (ISO, or day/month/year either way round)."""
    iso = text.str.extract(f"^{ISO_DATE}$").astype("float64")
    dmy = text.str.extract(f"^{_DMY_DATE}$").astype("float64")
    a, b = dmy[0], dmy[1]
    month = iso[1].fillna(b.where(b <= 12, a))
    day = iso[2].fillna(a.where(b <= 12, b))
    year = iso[0].fillna(dmy[2])
    valid = month.between(1, 12) & day.between(1, 31)
    return (year + (month - 1) / 12).where(valid)


def _births(years: pd.Series) -> tuple[pd.Series, bool]:
    """Which dates fall in a lifetime before today, and whether they spread like births."""
    now = datetime.now(UTC).year
    plausible = years.between(now - _MAX_AGE, now + 1, inclusive="left").fillna(False)
    inside = years[plausible]
    spread = (
        len(inside) >= 4
        and float(inside.quantile(0.75) - inside.quantile(0.25)) >= _MIN_BIRTH_SPREAD
    )
    return plausible.astype(bool), spread


def _phone(text: pd.Series) -> pd.Series:
    """7-16 digits in phone punctuation, with a leading ``+``, ``0`` or ``(`` or at least two
    separators (so ``1990-2000`` and plain numbers are not phone numbers)."""
    main = text.str.replace(_EXTENSION, "", regex=True)
    digits = main.str.count(r"\d")
    lead = main.str.match(r"[+0(]")
    separators = main.str.count(r"[\s().\-]+")
    return main.str.fullmatch(_PHONE) & digits.between(7, 16) & (lead | (separators >= 2))
