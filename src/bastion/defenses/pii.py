"""PII: find personal data in a table, and apply the policy the pipeline declares for it.

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

**Policy.** :func:`apply_pii_policies` applies the pipeline's ``data.pii`` rules
(:class:`~bastion.pipeline.config.PiiColumn`): ``drop``; ``pseudonymize`` (a keyed
HMAC-SHA256 token per value from a :class:`Pseudonymizer`, normally the keyring's pseudonym
key through :class:`KeyringPseudonymizer`: equal values give equal tokens across tables and
runs, so joins still work, until the key is rotated); ``generalize`` (number bins, text
truncation, dates to year or month); ``keep`` (with a reason). :func:`undeclared` and
:func:`pii_error` turn the hits no rule covers into the DataError that fails validation.
Checks return hits; the pipeline decides.
"""

from __future__ import annotations

import ipaddress
import itertools
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal, Protocol

import numpy as np
import pandas as pd

from bastion.defenses.findings import Finding
from bastion.errors import ConfigError, DataError

if TYPE_CHECKING:
    from bastion.pipeline.config import PiiColumn

__all__ = [
    "PATTERNS",
    "KeyringPseudonymizer",
    "PiiHit",
    "Pseudonymizer",
    "apply_pii_policies",
    "mask",
    "pii_error",
    "scan_table",
    "shown",
    "undeclared",
]

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
_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
_IPV4 = rf"{_OCTET}(?:\.{_OCTET}){{3}}"
_IPV6_SHAPE = r"[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*"
_CARD = r"\d(?:[ \-]?\d){11,18}"
_SSN = r"\d{3}-\d{2}-\d{4}"
_ISO_DATE = (
    r"(\d{4})[-/.](\d{1,2})[-/.](\d{1,2})"
    r"(?:[T ]\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?)?"
)
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
_MASK_EMAIL = re.compile(r"([A-Za-z0-9._%+\-]+)@((?:[A-Za-z0-9\-]+\.)+)([A-Za-z]{2,24})")
_MASK_IPV4 = re.compile(_IPV4)
_MASK_ISO_DATE = re.compile(_ISO_DATE)


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


# -- masking --------------------------------------------------------------------------------


def shown(column: str, value: object, show: Collection[str] = ()) -> str:
    """A data value as a message, finding or report may hold it: ``repr`` of the value when
    ``column`` is in ``show`` (the pipeline's ``data.show_values``), else ``repr`` of its
    :func:`mask`; ``null`` for a missing one."""
    if value is None or (isinstance(value, float) and value != value):
        return "null"
    return repr(value) if column in show else repr(mask(str(value)))


def mask(value: str) -> str:
    """``value`` with most of it starred out, for messages: never the value itself.

    Emails keep the first letter of the user and of the domain, and the top-level domain
    (``j***@e***.com``); dates keep the year (``1987-**-**``); IPv4 addresses the first
    number; words the first letter of each word of two letters or more (``J*** S****``);
    other values the last 4 of 8-11 letters and digits, the first one and the last 4 of 12
    or more (``4***********1111``), the last 2 of 5-7. Nothing is kept of a value with 4
    letters and digits or fewer. Punctuation stays; a value with no letter or digit
    becomes ``***``.
    """
    text = str(value)
    email = _MASK_EMAIL.fullmatch(text)
    if email:
        return f"{email[1][0]}***@{email[2][0]}***.{email[3]}"
    where = [i for i, ch in enumerate(text) if ch.isalnum()]
    if not where:
        return "***"
    if len(where) <= 4:
        keep: set[int] = set()
    elif _MASK_IPV4.fullmatch(text):
        keep = set(range(text.index(".")))
    elif _MASK_ISO_DATE.fullmatch(text):
        keep = set(where[:4])
    elif not any(ch.isdigit() for ch in text):
        keep = {
            i
            for i in where
            if (i == 0 or not text[i - 1].isalnum()) and i + 1 < len(text) and text[i + 1].isalnum()
        }
    else:
        n = len(where)
        tail = 4 if n >= 8 else 2 if n >= 5 else 0
        keep = set(where[n - tail :]) | set(where[: 1 if n >= 12 else 0])
    return "".join(ch if i in keep or not ch.isalnum() else "*" for i, ch in enumerate(text))


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
    take("ip", text.str.fullmatch(_IPV4) | _ipv6(text))
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
    iso = text.str.extract(f"^{_ISO_DATE}$").astype("float64")
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


# -- policies -------------------------------------------------------------------------------


class Pseudonymizer(Protocol):
    """What pseudonymizing a column needs: tokens for values, and which key made them."""

    @property
    def key_id(self) -> str:
        """Id of the key behind the tokens (goes into the report and the audit log)."""
        ...

    def pseudonymize(self, domain: str, values: Sequence[str]) -> list[str]:
        """One token per value; equal values in one domain give equal tokens."""
        ...


class _PseudonymKeys(Protocol):
    def active_pseudonym_key(self) -> str: ...

    def pseudonymize(self, key_id: str, domain: str, values: Sequence[str]) -> list[str]: ...


class KeyringPseudonymizer:
    """A :class:`Pseudonymizer` over a keyring's pseudonym key (``ws.keyring``).

    The key is chosen once, when this is made: a rotation during a run makes the rest of
    the run fail rather than mix tokens of two keys. The material stays in the keyring.
    """

    def __init__(self, keyring: _PseudonymKeys) -> None:
        self._keyring = keyring
        self.key_id = keyring.active_pseudonym_key()

    def pseudonymize(self, domain: str, values: Sequence[str]) -> list[str]:
        return self._keyring.pseudonymize(self.key_id, domain, values)


def apply_pii_policies(
    df: pd.DataFrame, rules: Mapping[str, PiiColumn], pseudonymizer: Pseudonymizer | None
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """A new frame with each rule applied to its column, and a JSON-able report per column.

    Nulls stay null under every policy. ``pseudonymize`` turns each value into text first
    (floats that are whole numbers without the ``.0``, so an id column with gaps still
    joins) and needs ``pseudonymizer``; values are used exactly as written (normalise case
    or spaces first if they should not count).
    """
    missing = [c for c in rules if c not in df.columns]
    if missing:
        known = ", ".join(map(str, list(df.columns)[:20]))
        raise ConfigError(
            f"data.pii.{missing[0]}: no column {missing[0]!r} in the data (columns: {known})"
        )
    out = df.copy()
    report: dict[str, Any] = {}
    for column, rule in rules.items():
        series = out[column]
        present = series.notna()
        counts = {"values": int(present.sum()), "nulls": int((~present).sum())}
        if rule.policy == "drop":
            out = out.drop(columns=[column])
            report[column] = {"policy": "drop", **counts}
        elif rule.policy == "keep":
            report[column] = {"policy": "keep", "reason": rule.reason, **counts}
        elif rule.policy == "pseudonymize":
            if pseudonymizer is None:
                raise ConfigError(
                    f"data.pii.{column}: policy pseudonymize needs a pseudonym key"
                    " (run the pipeline in a workspace, whose keyring holds one)"
                )
            domain = rule.domain or column
            codes, distinct = pd.factorize(_as_text(series[present]))
            tokens = pseudonymizer.pseudonymize(domain, distinct.tolist())
            if len(tokens) != len(distinct):
                raise ConfigError(
                    f"data.pii.{column}: the pseudonymizer gave {len(tokens)} tokens"
                    f" for {len(distinct)} values"
                )
            filled = np.asarray(tokens, dtype=object)[codes]
            out[column] = _fill(series, present, filled)
            report[column] = {
                "policy": "pseudonymize",
                "domain": domain,
                "key_id": pseudonymizer.key_id,
                "distinct": len(distinct),
                **counts,
            }
        else:
            out[column], detail = _generalize(column, series, present, rule)
            report[column] = {"policy": "generalize", **detail, **counts}
    return out, report


def _fill(series: pd.Series, present: pd.Series, values: Any) -> pd.Series:
    """Text column shaped like ``series``: ``values`` where present, null elsewhere."""
    full = np.full(len(series), None, dtype=object)
    full[present.to_numpy(dtype=bool)] = values
    return pd.Series(full, index=series.index, dtype="str")


def _as_text(values: pd.Series) -> pd.Series:
    """Values as text: whole-number floats without ``.0`` (ids with gaps become floats)."""
    if pd.api.types.is_float_dtype(values.dtype):
        finite = np.isfinite(values.to_numpy(dtype="float64"))
        if finite.all() and (values % 1 == 0).all():
            return values.astype("int64").astype("str")
    return values.astype("str")


def _generalize(
    column: str, series: pd.Series, present: pd.Series, rule: PiiColumn
) -> tuple[pd.Series, dict[str, Any]]:
    if rule.bins is not None:
        numbers = pd.to_numeric(series, errors="coerce")
        _refuse(column, series[present & numbers.isna()], "numbers for 'bins'")
        edges = np.asarray(rule.bins, dtype="float64")
        shown = [_edge(e) for e in rule.bins]
        labels = np.asarray(
            [f"<{shown[0]}"]
            + [f"[{a}, {b})" for a, b in itertools.pairwise(shown)]
            + [f">={shown[-1]}"],
            dtype=object,
        )
        where = np.searchsorted(edges, numbers[present].to_numpy(dtype="float64"), side="right")
        outside = int(((where == 0) | (where == len(edges))).sum())
        return _fill(series, present, labels[where]), {"bins": list(rule.bins), "outside": outside}
    if rule.truncate is not None:
        cut = _as_text(series[present]).str.slice(0, rule.truncate)
        return _fill(series, present, cut.to_numpy(dtype=object)), {"truncate": rule.truncate}
    year, month = _year_month(series[present])
    _refuse(column, series[present][year.isna()], "ISO 8601 dates (YYYY-MM-DD) for 'date'")
    coarse = year if rule.date == "year" else year + "-" + month
    return _fill(series, present, coarse.to_numpy(dtype=object)), {"date": rule.date}


def _edge(edge: float) -> str:
    return str(int(edge)) if float(edge).is_integer() else repr(float(edge))


def _year_month(values: pd.Series) -> tuple[pd.Series, pd.Series]:
    """Year and two-digit month as written, from datetimes or ISO 8601 text (null if not).

    Text is read, not parsed into instants: a time zone never moves a date into another
    month, and ``04/05/1987`` is refused rather than guessed.
    """
    if pd.api.types.is_datetime64_any_dtype(values.dtype):
        return values.dt.strftime("%Y"), values.dt.strftime("%m")
    parts = values.astype("str").str.strip().str.extract(f"^{_ISO_DATE}$")
    month, day = parts[1].astype("float64"), parts[2].astype("float64")
    valid = month.between(1, 12) & day.between(1, 31)
    return parts[0].where(valid), parts[1].str.zfill(2).where(valid)


def _refuse(column: str, bad: pd.Series, expected: str) -> None:
    if len(bad):
        raise DataError(
            f"data.pii.{column}: policy generalize needs {expected}; {len(bad)} value(s) are"
            f" not (e.g. {mask(str(bad.iloc[0]))})",
            [column],
        )


# -- verdict --------------------------------------------------------------------------------


def undeclared(hits: Sequence[PiiHit], declared: Collection[str]) -> list[PiiHit]:
    """The hits on columns that no ``data.pii`` rule names."""
    names = set(declared)
    return [hit for hit in hits if hit.column not in names]


def pii_error(hits: Sequence[PiiHit]) -> DataError:
    """The error that fails validation: each column, pattern, share and masked examples."""
    if not hits:
        raise ValueError("pii_error needs at least one hit")
    columns = list(dict.fromkeys(hit.column for hit in hits))
    return DataError(
        f"undeclared personal data in {len(columns)} column(s): "
        + "; ".join(hit.describe() for hit in hits)
        + ". Declare each as data.pii.<column>: {policy: drop|pseudonymize|generalize|keep}"
        f" in the pipeline file (e.g. data.pii.{columns[0]}: {{policy: pseudonymize}};"
        " keep needs a reason)",
        [hit.describe() for hit in hits],
    )
