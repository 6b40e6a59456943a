"""Split: the validated data into ``train`` and ``test`` tables, deterministically.

How it works. With ``split.test_source`` set, the test set is that source's validated table
and the train set is the other source's (there must be exactly one other source); both pass
through unchanged apart from a fresh 0..n-1 index. Otherwise the single source is split with
scikit-learn's ``train_test_split`` — shuffled with ``random_state=ctx.seed``, stratified on
the label when ``split.stratify`` is true, ``split.test_size`` of the rows in the test part
— so the same data and seed always give the same rows in the same order.

The test part is never screened. With one source, the poisoning screen runs over the whole
table before the split; splitting the screened table would also remove the rows the screen
found hard (suspected label noise, outliers) from the test part, and the metrics and gates
would be measured on a cleaned, easier test set (a run on data with 11% irreducible label
noise reported accuracy 1.0 that way). So the runner hands this stage the unscreened table
and the screen's ``quarantine`` (row numbers): the split is made on every row, the test
part keeps its rows as they came, and only the train part drops the quarantined ones. The
``report`` counts them (``quarantined_from_train``). The ``report``
records the mode, seed, sizes and the class balance (counts and fractions) of each part.

The seed comes from the run context, not from the constructor: the runner must include
``ctx.seed`` in the cache key of this stage.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import pandas as pd

from bastion.errors import ConfigError
from bastion.spec.stage import Stage

if TYPE_CHECKING:
    from bastion.spec.config import SplitConfig
    from bastion.spec.stage import Kind, StageContext

__all__ = ["SplitStage"]


class SplitStage(Stage):
    """Produce ``train``, ``test`` and a ``report`` from the validated source table(s)."""

    name = "split"
    version = "2"  # 2: the test part is never screened (one source)

    def __init__(
        self,
        split: SplitConfig,
        label: str,
        sources: list[str],
        tables: Mapping[str, str] | None = None,
        quarantine: str | None = None,
    ) -> None:
        """``tables`` maps each source to the ``stage.output`` holding its table, by default
        ``validate.<source>.table``; the runner passes the screened and PII-protected ones.
        ``quarantine`` (one source only) names the screen's quarantine output: its rows are
        left out of the train part, never out of the test part."""
        self.split = split
        self.label = label
        self.sources = list(sources)
        table = dict(tables or {s: f"validate.{s}.table" for s in self.sources})
        self.outputs: Mapping[str, Kind] = {"train": "table", "test": "table", "report": "json"}
        test = split.test_source
        if test is not None:
            others = [s for s in self.sources if s != test]
            if test not in self.sources or len(others) != 1:
                raise ConfigError(
                    f"split.test_source {test!r}: expected it to be one of exactly two data"
                    f" sources, got sources {self.sources}"
                )
            self.inputs: Mapping[str, str] = {
                "train": table[others[0]],
                "test": table[test],
            }
        else:
            if len(self.sources) != 1:
                raise ConfigError(
                    f"split: {len(self.sources)} data sources and no split.test_source;"
                    " expected one source to split, or test_source naming the test set"
                )
            self.inputs = {"data": table[self.sources[0]]}
            if quarantine is not None:
                self.inputs = {**self.inputs, "quarantine": quarantine}

    def fingerprint(self) -> Mapping[str, Any]:
        """The split config, label and sources (the seed is ``ctx.seed``: cache on it too)."""
        return {
            "split": self.split.model_dump(mode="json"),
            "label": self.label,
            "sources": self.sources,
        }

    def run(self, ctx: StageContext, inputs: Mapping[str, Any]) -> Mapping[str, Any]:
        if self.split.test_source is not None:
            train = inputs["train"].reset_index(drop=True)
            test = inputs["test"].reset_index(drop=True)
            mode, dropped = "test_source", 0
        else:
            train, test, dropped = self._random(inputs["data"], ctx.seed, inputs.get("quarantine"))
            mode = "random"
        sizes = {"train": len(train), "test": len(test)}
        report = {
            "mode": mode,
            "seed": ctx.seed,
            "label": self.label,
            "test_source": self.split.test_source,
            "test_size": self.split.test_size if mode == "random" else None,
            "stratify": self.split.stratify if mode == "random" else None,
            "sizes": sizes,
            "quarantined_from_train": dropped,
            "class_balance": {
                "train": _balance(train, self.label),
                "test": _balance(test, self.label),
            },
        }
        ctx.summary[self.name] = {"mode": mode, **sizes}
        return {"train": train, "test": test, "report": report}

    def _random(
        self, data: pd.DataFrame, seed: int, quarantine: pd.DataFrame | None = None
    ) -> tuple[pd.DataFrame, pd.DataFrame, int]:
        from sklearn.model_selection import train_test_split

        data = data.reset_index(drop=True)  # row numbers as the screen numbered them

        if self.label not in data.columns:
            raise ConfigError(f"split: the label column {self.label!r} is not in the data")
        stratify = data[self.label] if self.split.stratify else None
        try:
            train, test = train_test_split(
                data,
                test_size=self.split.test_size,
                random_state=seed,
                shuffle=True,
                stratify=stratify,
            )
        except ValueError as exc:
            hint = " (set split.stratify: false or use more data)" if stratify is not None else ""
            raise ConfigError(f"split: cannot split {len(data)} rows: {exc}{hint}") from None
        dropped = 0
        if quarantine is not None and len(quarantine):
            column = "row" if "row" not in data.columns else "_bastion_row"
            out = train.index.isin(quarantine[column].to_numpy(dtype="int64"))
            dropped = int(out.sum())
            train = train[~out]
        return train.reset_index(drop=True), test.reset_index(drop=True), dropped


def _balance(table: pd.DataFrame, label: str) -> dict[str, dict[str, float | int]]:
    counts = table[label].astype("str").value_counts(dropna=False).sort_index()
    total = max(int(counts.sum()), 1)
    return {
        str(k): {"count": int(v), "fraction": round(int(v) / total, 6)} for k, v in counts.items()
    }
