"""Shared fixtures for stage tests: the Adult pipeline config, an event recorder, and a
factory for StageContext. Keep this small and generic; stage-specific fixtures live in
each test module."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from bastion.spec.config import PipelineConfig
from bastion.spec.loader import load_pipeline
from bastion.spec.stage import StageContext

ADULT = Path(__file__).resolve().parents[3] / "examples" / "adult-income"


@dataclass
class EventRecorder:
    """Stands in for the runner's audit hook: keeps every (action, outcome, details)."""

    events: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)

    def __call__(self, action: str, outcome: str, details: Mapping[str, Any]) -> None:
        self.events.append((action, outcome, dict(details)))

    def actions(self) -> list[str]:
        return [action for action, _, _ in self.events]


@pytest.fixture(scope="session")
def adult_dir() -> Path:
    """examples/adult-income: the folder of the Adult pipeline file and its data/."""
    return ADULT


@pytest.fixture(scope="session")
def adult_config() -> PipelineConfig:
    """examples/adult-income/pipeline.yaml, loaded with the real loader."""
    config, _ = load_pipeline(ADULT / "pipeline.yaml")
    return config


@pytest.fixture
def events() -> EventRecorder:
    return EventRecorder()


@pytest.fixture
def ctx(
    adult_config: PipelineConfig, events: EventRecorder, tmp_path: Path
) -> Callable[..., StageContext]:
    """``ctx(config=None, base_dir=None, seed=None)``: a StageContext whose audit events go
    to the ``events`` fixture. Defaults: the Adult config, ``tmp_path``, the config's seed."""

    def make(
        config: PipelineConfig | None = None,
        *,
        base_dir: Path | None = None,
        seed: int | None = None,
    ) -> StageContext:
        cfg = config if config is not None else adult_config
        return StageContext(
            config=cfg,
            base_dir=base_dir if base_dir is not None else tmp_path,
            seed=cfg.seed if seed is None else seed,
            actor="tester",
            run_id="run-test",
            event=events,
        )

    return make
