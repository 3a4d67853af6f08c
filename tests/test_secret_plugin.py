"""The placeholder_secret test every preflight uses to refuse missing or placeholder secrets."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

_spec = importlib.util.spec_from_file_location(
    "secret_plugin", Path(__file__).resolve().parent.parent / "plugins" / "test" / "secret.py"
)
assert _spec
assert _spec.loader
secret = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(secret)


@pytest.mark.parametrize(
    "value",
    [
        None,
        "",
        "short",
        "CHANGE_ME_postgresql_app_password",
        "change-me-please-really-long",
        "<<placeholder value for redis>>",
        "xxxxxxxxxxxxxxxxxxxx",
        "****************",
        12345678901234567890,
        "REPLACE_ME_with_a_vault_value",
    ],
)
def test_placeholders_and_weak_values_are_refused(value: object) -> None:
    assert secret.placeholder_secret(value)


@pytest.mark.parametrize("value", ["q8Vt3mN0xR2pL7sK1wZ9", "a-long-random-generated-secret-4f9c2e"])
def test_real_looking_secrets_pass(value: str) -> None:
    assert not secret.placeholder_secret(value)


def test_minimum_length_is_adjustable() -> None:
    assert secret.placeholder_secret("q8Vt3mN0xR2p", min_length=16)
    assert not secret.placeholder_secret("q8Vt3mN0xR2p", min_length=12)


def test_plugin_is_registered_under_its_name() -> None:
    assert secret.TestModule().tests()["placeholder_secret"] is secret.placeholder_secret
