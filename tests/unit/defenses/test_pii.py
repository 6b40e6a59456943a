"""PII: found in generated identities, not in Adult; masked everywhere; policies that hold.

The identities come from Faker (seeded, four locales, so phone numbers come in many
formats); the negative control is the real Adult data the example pipeline trains on.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from faker import Faker
from hypothesis import given
from hypothesis import strategies as st

from bastion.defenses.findings import Finding
from bastion.defenses.pii import (
    PATTERNS,
    KeyringPseudonymizer,
    PiiHit,
    apply_pii_policies,
    mask,
    pii_error,
    scan_table,
    undeclared,
)
from bastion.errors import ConfigError, DataError, UnknownKeyError
from bastion.security.keys import LocalKeyring
from bastion.spec.config import PiiColumn

ROWS = 2_000
ADULT = Path(__file__).resolve().parents[3] / "examples" / "adult-income" / "data" / "adult.data"
PASS = "a long test passphrase"

#: Faker column → the pattern it must be found as
PII = {
    "name": "name",
    "first_name": "name",
    "last_name": "name",
    "email": "email",
    "phone_number": "phone",
    "ssn": "ssn",
    "iban": "iban",
    "credit_card_number": "card",
    "ipv4": "ip",
    "ipv6": "ip",
    "date_of_birth": "date_of_birth",
}
#: columns that hold no personal data (or none these patterns claim)
PLAIN = ["job", "city", "segment", "balance", "score", "signup_date", "company_name"]


@pytest.fixture(scope="module")
def people() -> pd.DataFrame:
    fake = Faker(["en_US", "en_GB", "de_DE", "fr_FR"])
    fake.seed_instance(20_240_601)
    us = fake["en_US"]
    rows = [
        {
            "name": fake.name(),
            "first_name": fake.first_name(),
            "last_name": fake.last_name(),
            "email": fake.email(),
            "phone_number": fake.phone_number(),
            "ssn": us.ssn(),
            "iban": fake.iban(),
            "credit_card_number": fake.credit_card_number(),
            "ipv4": fake.ipv4(),
            "ipv6": fake.ipv6(),
            "date_of_birth": fake.date_of_birth(),
            "job": fake.job(),
            "city": fake.city(),
            "segment": fake.random_element(["gold", "silver", "bronze"]),
            "balance": fake.pyint(0, 1_000_000),
            "score": fake.pyfloat(min_value=0, max_value=1),
            "signup_date": fake.date_between("-6y", "today"),
            "company_name": fake.company(),
        }
        for _ in range(ROWS)
    ]
    return pd.DataFrame(rows)


@pytest.fixture
def ring(tmp_path: Path) -> LocalKeyring:
    return LocalKeyring.create(tmp_path / "keyring.json", PASS, scrypt_log_n=14)


def _neutral(df: pd.DataFrame) -> pd.DataFrame:
    return df.rename(columns={c: f"c{i}" for i, c in enumerate(df.columns)})


def _found(hits: list[PiiHit]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for hit in hits:
        out.setdefault(hit.column, set()).add(hit.pattern)
    return out


# -- detection ------------------------------------------------------------------------------


def test_recall_on_generated_identities_is_at_least_95_percent(people: pd.DataFrame) -> None:
    found = _found(scan_table(people))
    caught = [c for c, pattern in PII.items() if pattern in found.get(c, set())]
    recall = len(caught) / len(PII)
    assert recall >= 0.95, f"recall {recall:.2f}; missed {sorted(set(PII) - set(caught))}"
    assert not set(found) & set(PLAIN), {c: found[c] for c in set(found) & set(PLAIN)}


def test_values_alone_find_pii_in_neutrally_named_columns(people: pd.DataFrame) -> None:
    names = {f"c{i}": c for i, c in enumerate(people.columns)}
    hits = {(names[h.column], h.pattern): h for h in scan_table(_neutral(people))}
    by_value = {c: p for c, p in PII.items() if p != "name"}  # names need a column name
    for column, pattern in by_value.items():
        hit = hits.get((column, pattern))
        assert hit is not None, f"{column}: not found as {pattern}"
        assert hit.by == "values" and hit.fraction >= 0.95, (column, hit)
    assert {c for c, _ in hits} == set(by_value)  # and nothing else: no name, no plain column


def test_no_false_positive_on_adults_columns() -> None:
    adult = pd.read_csv(ADULT, skipinitialspace=True, na_values=["?"])
    assert len(adult) > 30_000
    assert scan_table(adult) == []
    assert scan_table(adult, min_fraction=0.01) == []


def test_hits_name_how_they_were_found(people: pd.DataFrame) -> None:
    hits = {h.column: h for h in scan_table(people[["email", "first_name"]])}
    assert hits["email"].by == "both" and hits["email"].pattern == "email"
    assert hits["first_name"].by == "both"  # by name, and the values look like names
    only_name = scan_table(pd.DataFrame({"email": ["n/a", "unknown", "-"] * 10}))
    assert [(h.column, h.pattern, h.by, h.matched) for h in only_name] == [
        ("email", "email", "name", 0)
    ]


def _luhn_digit(body: str) -> str:
    total = 0
    for i, ch in enumerate(reversed(body)):
        d = int(ch) * (2 if i % 2 == 0 else 1)
        total += d - 9 if d > 9 else d
    return str((10 - total % 10) % 10)


def test_card_numbers_must_pass_luhn() -> None:
    rng = random.Random(5)
    bodies = [str(rng.randrange(4 * 10**14, 5 * 10**14)) for _ in range(500)]
    valid = [b + _luhn_digit(b) for b in bodies]
    invalid = [b + str((int(_luhn_digit(b)) + rng.randrange(1, 10)) % 10) for b in bodies]
    assert [h.pattern for h in scan_table(pd.DataFrame({"c": valid}))] == ["card"]
    assert scan_table(pd.DataFrame({"c": invalid})) == []
    spaced = [" ".join(v[i : i + 4] for i in range(0, 16, 4)) for v in valid]
    assert [h.pattern for h in scan_table(pd.DataFrame({"c": spaced}))] == ["card"]
    as_ints = pd.DataFrame({"valid": [int(v) for v in valid], "invalid": [int(v) for v in invalid]})
    assert [(h.column, h.pattern) for h in scan_table(as_ints)] == [("valid", "card")]


def test_ibans_must_pass_mod_97(people: pd.DataFrame) -> None:
    good = people["iban"].tolist()
    bad = [f"{v[:2]}{(int(v[2:4]) + 1) % 100:02d}{v[4:]}" for v in good]  # check digits off
    assert [h.pattern for h in scan_table(pd.DataFrame({"c": good}))] == ["iban"]
    assert scan_table(pd.DataFrame({"c": bad})) == []
    spaced = [" ".join(v[i : i + 4] for i in range(0, len(v), 4)) for v in good]
    assert [h.pattern for h in scan_table(pd.DataFrame({"c": spaced}))] == ["iban"]


def test_impossible_ssns_and_bare_numbers_are_not_ssns() -> None:
    impossible = ["000-12-3456", "666-12-3456", "912-12-3456", "123-00-4567", "123-45-0000"]
    assert scan_table(pd.DataFrame({"c": impossible * 20})) == []
    nine_digits = pd.DataFrame({"c": np.arange(123_456_789, 123_457_789)})
    assert scan_table(nine_digits) == []  # an id, unless the column name says otherwise
    named = scan_table(nine_digits.rename(columns={"c": "SSN"}))
    assert [(h.pattern, h.by) for h in named] == [("ssn", "name")]


def test_event_dates_are_not_dates_of_birth_but_birth_dates_are(people: pd.DataFrame) -> None:
    dates = pd.DataFrame({"c1": people["signup_date"], "c2": people["date_of_birth"]})
    assert [(h.column, h.pattern) for h in scan_table(dates)] == [("c2", "date_of_birth")]
    as_datetimes = dates.apply(pd.to_datetime)
    assert [(h.column, h.pattern) for h in scan_table(as_datetimes)] == [("c2", "date_of_birth")]
    text = pd.DataFrame({"c": [d.strftime("%d/%m/%Y") for d in people["date_of_birth"]]})
    assert [h.pattern for h in scan_table(text)] == ["date_of_birth"]
    named = scan_table(dates.rename(columns={"c1": "dob"}))
    assert ("dob", "date_of_birth", "both") in {(h.column, h.pattern, h.by) for h in named}


@pytest.mark.parametrize(
    ("column", "pattern"),
    [
        ("email", "email"),
        ("E-Mail", "email"),
        ("userEmail", "email"),
        ("email_address", "email"),
        ("phone", "phone"),
        ("tel", "phone"),
        ("mobile_number", "phone"),
        ("HomePhone", "phone"),
        ("ssn", "ssn"),
        ("social_security_number", "ssn"),
        ("iban", "iban"),
        ("credit_card", "card"),
        ("card_number", "card"),
        ("ip", "ip"),
        ("client_ip_address", "ip"),
        ("dob", "date_of_birth"),
        ("birth_date", "date_of_birth"),
        ("dateOfBirth", "date_of_birth"),
        ("name", "name"),
        ("first_name", "name"),
        ("LastName", "name"),
        ("surname", "name"),
        ("full_name", "name"),
        ("given_name", "name"),
        ("customer_name", "name"),
    ],
)
def test_column_names_give_pii_away(column: str, pattern: str) -> None:
    hits = scan_table(pd.DataFrame({column: ["x"] * 10}))
    assert [(h.pattern, h.by) for h in hits] == [(pattern, "name")]


@pytest.mark.parametrize(
    "column",
    [
        "hotel",
        "zip",
        "is_mobile",
        "email_verified",
        "card_type",
        "birthplace",
        "file_name",
        "company_name",
        "city_name",
        "sex",
        "race",
        "native-country",
        "education-num",
        "ship_date",
        "description",
    ],
)
def test_ordinary_column_names_are_not_pii(column: str) -> None:
    assert scan_table(pd.DataFrame({column: ["Alice Smith", "Bob Jones", "x"] * 10})) == []


def test_other_name_columns_count_when_their_values_are_peoples_names(
    people: pd.DataFrame,
) -> None:
    df = pd.DataFrame({"owner_name": people["name"], "product_name": people["job"]})
    assert [(h.column, h.pattern, h.by) for h in scan_table(df)] == [("owner_name", "name", "both")]


def test_sampling_is_seeded_and_skip_is_honoured(people: pd.DataFrame) -> None:
    once = scan_table(people, sample_rows=500, seed=3)
    assert once == scan_table(people, sample_rows=500, seed=3)
    assert all(h.checked <= 500 for h in once)
    skipped = scan_table(people, skip=["email", "ssn"])
    assert not {"email", "ssn"} & {h.column for h in skipped}


def test_nulls_and_blanks_do_not_dilute_the_share() -> None:
    emails = ["a@example.org", "b@example.org"] * 10 + [None] * 50 + [""] * 50
    (hit,) = scan_table(pd.DataFrame({"c": emails}))
    assert (hit.pattern, hit.matched, hit.checked, hit.fraction) == ("email", 20, 20, 1.0)


def test_bad_scan_settings_are_refused(people: pd.DataFrame) -> None:
    with pytest.raises(ConfigError, match="min_fraction"):
        scan_table(people, min_fraction=0)
    with pytest.raises(ConfigError, match="sample_rows"):
        scan_table(people, sample_rows=0)


def test_patterns_lists_every_pattern_a_hit_can_name(people: pd.DataFrame) -> None:
    assert {h.pattern for h in scan_table(people)} == set(PATTERNS)
    assert len(PATTERNS) == len(set(PATTERNS)) == 8


# -- masking --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "masked"),
    [
        ("john.smith@example.com", "j***@e***.com"),
        ("123-45-1234", "***-**-1234"),
        ("4111111111111111", "4***********1111"),
        ("(555) 123-4567", "(***) ***-4567"),
        ("1987-04-12", "1987-**-**"),
        ("192.168.1.23", "192.***.*.**"),
        ("John Smith", "J*** S****"),
        ("abc", "***"),
        ("---", "***"),
    ],
)
def test_mask_examples(value: str, masked: str) -> None:
    assert mask(value) == masked


@given(st.text(min_size=5))
def test_mask_never_contains_the_value(value: str) -> None:
    assert value not in mask(value)


@given(st.emails())
def test_mask_never_contains_an_email(value: str) -> None:
    assert value not in mask(value)


def test_messages_and_reports_never_carry_a_raw_value(people: pd.DataFrame) -> None:
    table = _neutral(people[[c for c in PII if PII[c] != "name"]].astype(str))
    hits = scan_table(table)
    text = str(pii_error(hits)) + json.dumps([h.to_json() for h in hits])
    leaked = [v for c in table.columns for v in table[c] if v in text]
    assert not leaked, leaked[:3]


# -- the verdict ----------------------------------------------------------------------------


def test_undeclared_pii_fails_naming_column_pattern_share_and_how_to_declare() -> None:
    df = pd.DataFrame(
        {
            "c1": [f"user{i}@example.org" for i in range(50)],
            "email": [f"x{i}@example.org" for i in range(50)],
            "age": range(50),
        }
    )
    hits = scan_table(df)
    left = undeclared(hits, declared={"email"})
    assert [h.column for h in left] == ["c1"]
    error = pii_error(left)
    assert isinstance(error, DataError)
    message = str(error)
    assert "'c1'" in message and "email" in message and "100.0% of 50" in message
    assert "u***@e***.org" in message and "user1@example.org" not in message
    assert "data.pii.<column>: {policy: drop|pseudonymize|generalize|keep}" in message
    assert "data.pii.c1" in message
    assert error.failures == [h.describe() for h in left]
    with pytest.raises(ValueError, match="at least one"):
        pii_error([])


def test_a_hit_is_a_column_finding() -> None:
    (hit,) = scan_table(pd.DataFrame({"c": ["a@example.org"] * 10}))
    finding = hit.to_finding()
    assert isinstance(finding, Finding)
    assert (finding.row, finding.detector, finding.reason, finding.column) == (
        None,
        "pii",
        "pii_email",
        "c",
    )
    assert finding.score == 1.0


# -- policies -------------------------------------------------------------------------------


def test_pseudonyms_are_stable_across_runs_with_one_key(ring: LocalKeyring, tmp_path: Path) -> None:
    df = pd.DataFrame({"email": ["a@x.org", None, "b@x.org", "a@x.org"]})
    rules = {"email": PiiColumn(policy="pseudonymize")}
    first, report = apply_pii_policies(df, rules, KeyringPseudonymizer(ring))
    reopened = LocalKeyring.open(tmp_path / "keyring.json", PASS)
    second, _ = apply_pii_policies(df, rules, KeyringPseudonymizer(reopened))
    pd.testing.assert_frame_equal(first, second)
    tokens = first["email"]
    assert tokens[0] == tokens[3] != tokens[2] and pd.isna(tokens[1])
    assert "a@x.org" not in tokens.tolist()
    assert report["email"] == {
        "policy": "pseudonymize",
        "domain": "email",
        "key_id": ring.active_pseudonym_key(),
        "distinct": 2,
        "values": 3,
        "nulls": 1,
    }


def test_pseudonyms_join_across_tables_in_one_domain(ring: LocalKeyring) -> None:
    orders = pd.DataFrame({"customer": ["a@x.org", "b@x.org", "a@x.org"], "total": [1, 2, 3]})
    people = pd.DataFrame({"mail": ["b@x.org", "a@x.org"], "segment": ["s", "t"]})
    keys = KeyringPseudonymizer(ring)
    o, _ = apply_pii_policies(
        orders, {"customer": PiiColumn(policy="pseudonymize", domain="e")}, keys
    )
    p, _ = apply_pii_policies(people, {"mail": PiiColumn(policy="pseudonymize", domain="e")}, keys)
    joined = o.merge(p, left_on="customer", right_on="mail")
    assert sorted(zip(joined["total"], joined["segment"], strict=True)) == [
        (1, "t"),
        (2, "s"),
        (3, "t"),
    ]
    other, _ = apply_pii_policies(people, {"mail": PiiColumn(policy="pseudonymize")}, keys)
    assert not set(other["mail"]) & set(p["mail"])  # another domain, other tokens


def test_whole_number_ids_with_gaps_still_join(ring: LocalKeyring) -> None:
    ints = pd.DataFrame({"id": [1, 2, 3]})
    floats = pd.DataFrame({"id": [1.0, np.nan, 3.0]})
    rules = {"id": PiiColumn(policy="pseudonymize")}
    keys = KeyringPseudonymizer(ring)
    a, _ = apply_pii_policies(ints, rules, keys)
    b, _ = apply_pii_policies(floats, rules, keys)
    assert (a["id"][0], a["id"][2]) == (b["id"][0], b["id"][2]) and pd.isna(b["id"][1])


def test_pseudonyms_change_after_rotation_and_a_run_never_mixes_keys(ring: LocalKeyring) -> None:
    df = pd.DataFrame({"email": [f"u{i}@x.org" for i in range(100)]})
    rules = {"email": PiiColumn(policy="pseudonymize")}
    pinned = KeyringPseudonymizer(ring)
    before, _ = apply_pii_policies(df, rules, pinned)
    ring.add_pseudonym_key()
    after, report = apply_pii_policies(df, rules, KeyringPseudonymizer(ring))
    assert not set(before["email"]) & set(after["email"])
    assert report["email"]["key_id"] == ring.active_pseudonym_key() != pinned.key_id
    with pytest.raises(UnknownKeyError):
        apply_pii_policies(df, rules, pinned)  # made before the rotation: refused, not mixed


def test_generalize_bins_label_intervals_and_keep_nulls() -> None:
    df = pd.DataFrame({"age": [5, 30, 49.5, 50, 119, 120, None, 17]})
    rule = PiiColumn(policy="generalize", bins=[0, 30, 50, 120])
    out, report = apply_pii_policies(df, {"age": rule}, None)
    labels = out["age"].tolist()
    assert labels[:6] == ["[0, 30)", "[30, 50)", "[30, 50)", "[50, 120)", "[50, 120)", ">=120"]
    assert pd.isna(labels[6]) and labels[7] == "[0, 30)"
    rule = PiiColumn(policy="generalize", bins=[0, 2.5])
    below, _ = apply_pii_policies(pd.DataFrame({"x": [-1.0, 2.5]}), {"x": rule}, None)
    assert below["x"].tolist() == ["<0", ">=2.5"]
    assert report["age"] == {
        "policy": "generalize",
        "bins": [0, 30, 50, 120],
        "outside": 1,
        "values": 7,
        "nulls": 1,
    }


def test_generalize_bins_refuse_text_without_showing_it() -> None:
    df = pd.DataFrame({"age": ["41", "forty-two"]})
    rule = PiiColumn(policy="generalize", bins=[0, 50])
    with pytest.raises(DataError, match=r"data\.pii\.age: .*numbers") as caught:
        apply_pii_policies(df, {"age": rule}, None)
    assert "forty-two" not in str(caught.value)


def test_generalize_truncates_text() -> None:
    df = pd.DataFrame({"zip": ["02134", "90210", None]})
    out, report = apply_pii_policies(df, {"zip": PiiColumn(policy="generalize", truncate=3)}, None)
    assert out["zip"].tolist()[:2] == ["021", "902"] and pd.isna(out["zip"][2])
    assert report["zip"]["truncate"] == 3


@pytest.mark.parametrize(
    "dates",
    [
        ["1987-04-12", "2001-12-31", None],
        ["1987-04-12T10:00:00Z", "2001-12-31 23:59", None],
        pd.to_datetime(["1987-04-12", "2001-12-31", None]),
    ],
)
def test_generalize_dates_to_year_or_month(dates: list[str | None]) -> None:
    df = pd.DataFrame({"dob": dates})
    year, _ = apply_pii_policies(df, {"dob": PiiColumn(policy="generalize", date="year")}, None)
    month, _ = apply_pii_policies(df, {"dob": PiiColumn(policy="generalize", date="month")}, None)
    assert year["dob"].tolist()[:2] == ["1987", "2001"] and pd.isna(year["dob"][2])
    assert month["dob"].tolist()[:2] == ["1987-04", "2001-12"] and pd.isna(month["dob"][2])


def test_generalize_dates_refuses_what_is_not_a_date() -> None:
    rule = PiiColumn(policy="generalize", date="month")
    for odd in ["someday 123456", "04/05/1987"]:  # 4 May or April 5? refused, not guessed
        df = pd.DataFrame({"dob": ["1987-04-12", odd]})
        with pytest.raises(DataError, match=r"data\.pii\.dob: .*ISO 8601 dates") as caught:
            apply_pii_policies(df, {"dob": rule}, None)
        assert odd not in str(caught.value)


def test_keep_and_drop(people: pd.DataFrame) -> None:
    rules = {
        "email": PiiColumn(policy="drop"),
        "city": PiiColumn(policy="keep", reason="needed for delivery"),
    }
    out, report = apply_pii_policies(people, rules, None)
    assert "email" not in out.columns and "email" in people.columns  # a new frame
    pd.testing.assert_series_equal(out["city"], people["city"])
    assert report["city"] == {
        "policy": "keep",
        "reason": "needed for delivery",
        "values": ROWS,
        "nulls": 0,
    }
    assert report["email"]["policy"] == "drop"
    json.dumps(report)


def test_a_rule_for_a_missing_column_names_it(people: pd.DataFrame) -> None:
    with pytest.raises(ConfigError, match=r"data\.pii\.e_mail: no column 'e_mail'"):
        apply_pii_policies(people, {"e_mail": PiiColumn(policy="drop")}, None)


def test_pseudonymize_without_a_key_is_refused(people: pd.DataFrame) -> None:
    with pytest.raises(ConfigError, match=r"data\.pii\.email: policy pseudonymize needs"):
        apply_pii_policies(people, {"email": PiiColumn(policy="pseudonymize")}, None)
