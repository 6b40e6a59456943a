"""Writes data/loans.csv: 3,000 made-up loan applications for the how-to
(docs/how-to/own-dataset.md). Seeded, so the file and its SHA-256 pin never change.

Every person here is invented: names and e-mail addresses are drawn from short lists, and
whether a loan defaults depends on the loan-to-income ratio, the term and the employment
status (plus noise), never on age or sex.

    python examples/loan-default/make_data.py     # rewrites the file, prints its SHA-256
"""

from __future__ import annotations

import csv
import hashlib
import math
import random
from pathlib import Path

__all__ = ["write"]

ROWS = 3000
FIRST = ["Ada", "Ben", "Chen", "Dana", "Eli", "Fatima", "Goran", "Hana", "Ivan", "Jo", "Kemi"]
LAST = ["Abbott", "Berg", "Costa", "Diallo", "Evans", "Fischer", "Garcia", "Huang", "Ito"]
EMPLOYMENT = ["employed", "self-employed", "unemployed", "retired"]
RISK = {"employed": 0.0, "self-employed": 0.5, "unemployed": 1.6, "retired": 0.3}


def _row(rng: random.Random, i: int) -> list[str]:
    first, last = rng.choice(FIRST), rng.choice(LAST)
    employment = rng.choices(EMPLOYMENT, weights=[70, 15, 8, 7])[0]
    income = round(rng.lognormvariate(10.6, 0.45), 2)
    loan = round(min(max(income * rng.uniform(0.1, 2.5), 100), 1_000_000), 2)
    term = rng.choice([12, 24, 36, 60, 120, 240, 360])
    score = -3.6 + 2.2 * (loan / income) + 0.004 * term + RISK[employment] + rng.gauss(0, 0.3)
    defaulted = "yes" if rng.random() < 1 / (1 + math.exp(-score)) else "no"
    email = f"{first}.{last}{i}@example.com".lower() if rng.random() < 0.9 else ""
    return [
        f"A{100000 + i}",
        f"{first} {last}",
        email,
        f"{rng.randint(10000, 99999)}",
        str(rng.randint(18, 90)),
        rng.choices(["female", "male", "other"], weights=[49, 49, 2])[0],
        f"{income:.2f}",
        f"{loan:.2f}",
        str(term),
        employment if rng.random() < 0.97 else "",
        defaulted,
    ]


def write(path: Path) -> str:
    """Writes the file and returns its SHA-256 (the pin in pipeline.yaml)."""
    rng = random.Random(20261205)  # noqa: S311 - made-up data, not a secret
    header = [
        "application_id", "full_name", "email", "zip_code", "age", "sex", "income",
        "loan_amount", "term_months", "employment", "defaulted",
    ]  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as f:
        out = csv.writer(f, lineterminator="\n")
        out.writerow(header)
        out.writerows(_row(rng, i) for i in range(ROWS))
    return hashlib.sha256(path.read_bytes()).hexdigest()


if __name__ == "__main__":
    print(write(Path(__file__).parent / "data" / "loans.csv"))
