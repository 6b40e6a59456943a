"""Output hardening: give a client no more of the model's scores than it needs.

Full probability vectors are what model-extraction and membership-inference attacks feed
on (Tramèr et al., "Stealing Machine Learning Models via Prediction APIs", USENIX Security
2016). :class:`OutputPolicy` turns a ``proba`` matrix (rows × classes) into the values a
response carries, per deployment:

* ``label`` (the default): the best class only, as a string;
* ``top_k``: the ``k`` best classes as ``{"label", "score"}``, scores rounded to ``decimals``;
* ``rounded``: every class's score, rounded to ``decimals``;
* ``noised``: scores plus Laplace noise of scale ``noise_scale``, clipped to [0, 1],
  renormalised to sum to 1, then rounded. The noise comes from a generator seeded from
  :mod:`secrets` unless a ``seed`` is given (tests only: a seeded stream is predictable).
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np

from bastion.errors import ConfigError

__all__ = ["MODES", "OutputPolicy"]

MODES: tuple[str, ...] = ("label", "top_k", "rounded", "noised")


class OutputPolicy:
    """How much of a prediction a response reveals; see the module docstring."""

    def __init__(
        self,
        mode: Literal["label", "top_k", "rounded", "noised"] = "label",
        k: int = 1,
        decimals: int = 2,
        noise_scale: float = 0.02,
        seed: int | None = None,
    ) -> None:
        if mode not in MODES:
            raise ConfigError(f"mode: expected one of {list(MODES)}, got {mode!r}")
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ConfigError(f"k: expected an integer >= 1, got {k!r}")
        if isinstance(decimals, bool) or not isinstance(decimals, int) or not 0 <= decimals <= 6:
            raise ConfigError(f"decimals: expected an integer in [0, 6], got {decimals!r}")
        if (
            isinstance(noise_scale, bool)
            or not isinstance(noise_scale, int | float)
            or not np.isfinite(noise_scale)
            or noise_scale <= 0
        ):
            raise ConfigError(f"noise_scale: expected a finite number > 0, got {noise_scale!r}")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise ConfigError(f"seed: expected an integer or None, got {seed!r}")
        self.mode = mode
        self.k = k
        self.decimals = decimals
        self.noise_scale = float(noise_scale)
        self._rng = np.random.default_rng(secrets.randbits(128) if seed is None else seed)

    def apply(self, proba: np.ndarray, classes: Sequence[str]) -> list[Any]:
        """One output value per row of ``proba`` (rows × len(classes))."""
        p = np.asarray(proba, dtype=np.float64)
        if p.ndim != 2 or p.shape[1] != len(classes):
            raise ConfigError(f"proba: expected shape (rows, {len(classes)}), got {tuple(p.shape)}")
        if not np.all(np.isfinite(p)):
            raise ConfigError("proba: expected finite scores")
        names = [str(c) for c in classes]
        if self.mode == "label":
            return [names[i] for i in np.argmax(p, axis=1)]
        if self.mode == "noised":
            p = np.clip(p + self._rng.laplace(0.0, self.noise_scale, size=p.shape), 0.0, 1.0)
            total = p.sum(axis=1, keepdims=True)
            p = np.divide(p, total, out=np.full_like(p, 1.0 / p.shape[1]), where=total > 0)
        scores = np.round(p, self.decimals)
        if self.mode == "top_k":
            k = min(self.k, len(names))
            order = np.argsort(-p, axis=1, kind="stable")[:, :k]
            return [
                [{"label": names[j], "score": float(scores[r, j])} for j in order[r]]
                for r in range(p.shape[0])
            ]
        return [
            {names[j]: float(scores[r, j]) for j in range(len(names))} for r in range(p.shape[0])
        ]
