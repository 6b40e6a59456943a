"""The layers, cycles, reach-ins, ``__all__`` and the crypto boundary — each rule run on the
real tree, and each shown failing on a planted violation, so none passes by accident.

The layers, bottom to top (a layer may import itself and the layers listed for it):

====================  =====================================================================
base                  errors, file helpers, canonical JSON, thread policy
security              keys, crypto recipes (``security.hazmat``), signing, audit, access
store                 metadata database, artifact store
spec                  the pipeline file (schema, loader), the stage protocol, expressions
io                    file readers
defenses              protections that change data, models or outputs
audits                measurements of a model
monitoring            live detection
compliance            reports and model cards
stages                the pipeline's steps
pipeline              the runner, provenance, the stage cache, the model registry
api                   ``bastion``, the workspace and its operations, ``bastion.data``
serving               the inference server
cli                   the shell
====================  =====================================================================
"""

from __future__ import annotations

import pytest

from tests.architecture._rules import (
    all_problems,
    cycles,
    edges,
    hazmat_outside,
    layer_violations,
    long_functions,
    oversized_modules,
    private_reach_ins,
    real_tree,
)

LAYERS = {
    "bastion.errors": "base",
    "bastion._fs": "base",
    "bastion._canonical": "base",
    "bastion.threads": "base",
    "bastion.security": "security",
    "bastion.store": "store",
    "bastion.spec": "spec",
    "bastion.io": "io",
    "bastion.defenses": "defenses",
    "bastion.audits": "audits",
    "bastion.monitoring": "monitoring",
    "bastion.compliance": "compliance",
    "bastion.stages": "stages",
    "bastion.pipeline": "pipeline",
    "bastion": "api",
    "bastion.workspace": "api",
    "bastion._operations": "api",
    "bastion.data": "api",
    "bastion.serving": "serving",
    "bastion.cli": "cli",
    "bastion.__main__": "cli",
}
_BELOW_STAGES = ["base", "spec", "io", "defenses", "audits", "compliance"]
ALLOWED = {
    "base": [],
    "security": ["base"],
    "store": ["base", "security"],
    "spec": ["base"],
    "io": ["base", "spec"],
    "defenses": ["base", "spec", "io"],
    "audits": ["base", "spec", "defenses"],
    "monitoring": ["base", "spec", "defenses"],
    "compliance": ["base", "spec"],
    "stages": _BELOW_STAGES,
    "pipeline": [*_BELOW_STAGES, "security", "store", "stages"],
    "api": [*_BELOW_STAGES, "security", "store", "stages", "pipeline", "monitoring"],
    "serving": ["base", "spec", "defenses", "monitoring", "api"],
    "cli": ["base", "api", "serving"],
}
HAZMAT_HOME = "bastion.security.hazmat"


@pytest.fixture(scope="module")
def tree() -> tuple[dict[str, str], set[str]]:
    return real_tree()


def _planted(modules: dict[str, str], packages: set[str]) -> tuple[dict[str, str], set[str]]:
    return modules, packages


# -- the real tree ------------------------------------------------------------------------


def test_every_import_respects_the_layers(tree: tuple[dict[str, str], set[str]]) -> None:
    modules, packages = tree
    assert layer_violations(edges(modules, packages), LAYERS, ALLOWED) == []


def test_no_import_cycles(tree: tuple[dict[str, str], set[str]]) -> None:
    modules, packages = tree
    assert cycles(edges(modules, packages)) == []


def test_no_module_takes_another_modules_private_name(
    tree: tuple[dict[str, str], set[str]],
) -> None:
    assert private_reach_ins(*tree) == []


def test_only_the_crypto_module_imports_hazmat(tree: tuple[dict[str, str], set[str]]) -> None:
    assert hazmat_outside(*tree, HAZMAT_HOME) == []


def test_every_public_module_declares_a_complete_sorted_all(
    tree: tuple[dict[str, str], set[str]],
) -> None:
    modules, _packages = tree
    problems = [
        p
        for name, source in modules.items()
        if not any(part.startswith("_") for part in name.split(".")[1:])
        and not name.startswith("bastion.cli")
        for p in all_problems(name, source)
    ]
    assert problems == []


def test_modules_stay_small_or_say_why(tree: tuple[dict[str, str], set[str]]) -> None:
    assert oversized_modules(tree[0]) == []


def test_functions_stay_short_where_the_controls_live(
    tree: tuple[dict[str, str], set[str]],
) -> None:
    prefixes = ("bastion.pipeline", "bastion.security", "bastion.serving")
    assert long_functions(tree[0], prefixes) == []


# -- each rule fails on a planted violation -----------------------------------------------


def test_size_rules_catch_a_long_module_and_a_long_function() -> None:
    long_module = "x = 1\n" * 401
    assert oversized_modules({"bastion.m": long_module}) == ["bastion.m: 401 lines"]
    assert (
        oversized_modules({"bastion.m": "# Over 400 lines, because one format.\n" + long_module})
        == []
    )
    body = "def f():\n" + "    x = 1\n" * 60
    assert long_functions({"bastion.pipeline.m": body}, ("bastion.pipeline",)) == [
        "bastion.pipeline.m.f: 61 lines"
    ]
    assert long_functions({"bastion.stages.m": body}, ("bastion.pipeline",)) == []


def test_layer_rule_catches_a_spec_module_importing_a_stage() -> None:
    modules, packages = _planted(
        {
            "bastion.spec": "",
            "bastion.spec.config": "from bastion.stages.train import TrainStage\n",
            "bastion.stages": "",
            "bastion.stages.train": "class TrainStage: ...\n",
        },
        {"bastion.spec", "bastion.stages"},
    )
    bad = layer_violations(edges(modules, packages), LAYERS, ALLOWED)
    assert bad == ["bastion.spec.config (spec) imports bastion.stages.train (stages)"]


def test_layer_rule_sees_imports_inside_functions() -> None:
    modules, packages = _planted(
        {
            "bastion.security": "",
            "bastion.security.keys": "def f():\n    from bastion.cli import app\n",
            "bastion.cli": "",
            "bastion.cli.app": "",
        },
        {"bastion.security", "bastion.cli"},
    )
    assert layer_violations(edges(modules, packages), LAYERS, ALLOWED) == [
        "bastion.security.keys (security) imports bastion.cli.app (cli)"
    ]


def test_cycle_rule_sees_relative_imports_and_importlib() -> None:
    modules, packages = _planted(
        {
            "bastion.pipeline": "",
            "bastion.pipeline.a": "from . import b\n",
            "bastion.pipeline.b": (
                "import importlib\n\ndef load():\n"
                "    return importlib.import_module('bastion.pipeline.a')\n"
            ),
        },
        {"bastion.pipeline"},
    )
    assert cycles(edges(modules, packages)) == [["bastion.pipeline.a", "bastion.pipeline.b"]]


def test_cycle_rule_ignores_type_checking_imports() -> None:
    modules, packages = _planted(
        {
            "bastion.pipeline": "",
            "bastion.pipeline.a": "from bastion.pipeline.b import B\n",
            "bastion.pipeline.b": (
                "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                "    from bastion.pipeline.a import A\nclass B: ...\n"
            ),
        },
        {"bastion.pipeline"},
    )
    assert cycles(edges(modules, packages)) == []


def test_private_rule_catches_a_reach_in() -> None:
    modules, packages = _planted(
        {
            "bastion.io": "",
            "bastion.io.stream": "from bastion.stages.validate import _validate\n",
            "bastion.stages": "",
            "bastion.stages.validate": "def _validate(): ...\n",
            "bastion.stages._parse": "",
            "bastion.stages.ok": "from bastion.stages import _parse\n",
        },
        {"bastion.io", "bastion.stages"},
    )
    assert private_reach_ins(modules, packages) == [
        "bastion.io.stream:1 takes bastion.stages.validate._validate"
    ]


def test_hazmat_rule_catches_a_primitive_outside_the_crypto_module() -> None:
    modules, packages = _planted(
        {
            "bastion.security.hazmat": "from cryptography.hazmat.primitives import hashes\n",
            "bastion.store.blob": (
                "from cryptography.hazmat.primitives.ciphers.aead import AESGCM\n"
            ),
        },
        set(),
    )
    assert hazmat_outside(modules, packages, HAZMAT_HOME) == ["bastion.store.blob:1"]


def test_all_rule_catches_missing_unsorted_and_absent() -> None:
    assert all_problems("m", "__all__ = ['b', 'a']\ndef a(): ...\ndef b(): ...\n") == [
        "m: __all__ is not sorted"
    ]
    assert all_problems("m", "__all__ = ['a']\ndef a(): ...\ndef c(): ...\n") == [
        "m: __all__ leaves out ['c']"
    ]
    assert all_problems("m", "class Public: ...\n") == ["m: public names ['Public'] but no __all__"]
    assert all_problems("m", "__all__ = ['a']\ndef a(): ...\ndef _b(): ...\n") == []
