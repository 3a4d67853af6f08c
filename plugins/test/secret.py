"""Jinja tests for secrets given in inventories and vaults.

``x is tutormax.cluster.placeholder_secret`` is true when ``x`` is missing, empty, too short, or
one of the placeholder values the example inventories ship (``CHANGE_ME...``), so every role's
preflight rejects it with the same rule.
"""

from __future__ import annotations

import re
from typing import Any

DOCUMENTATION = r"""
name: placeholder_secret
short_description: Is a secret missing, short or a placeholder
description:
  - True when the value is undefined, not a string, shorter than I(min_length) characters, or looks
    like a placeholder (C(CHANGE_ME), C(changeme), C(placeholder), C(password), C(secret), C(xxx...)).
options:
  _input:
    description: The secret to check.
    required: true
  min_length:
    description: Shortest acceptable secret.
    type: int
    default: 16
"""

EXAMPLES = r"""
- name: Refuse a placeholder password
  ansible.builtin.assert:
    that: postgresql_app_password is not tutormax.cluster.placeholder_secret
    fail_msg: Set postgresql_app_password in the vault (16+ characters, not a placeholder).
"""

RETURN = r"""
_value:
  description: Whether the secret must be replaced.
  type: boolean
"""

PLACEHOLDER = re.compile(
    r"change[\W_]*me|placeholder|replace[\W_]*me|^(?:password|secret|tutormax|redis|postgres)\d*$|^x{3,}$|^\*+$",
    re.IGNORECASE,
)


def placeholder_secret(value: object, min_length: int = 16) -> bool:
    """Return True when ``value`` cannot be used as a secret."""
    if not isinstance(value, str):
        return True
    if len(value) < min_length:
        return True
    return PLACEHOLDER.search(value) is not None


class TestModule:
    """Ansible test plugin entry point."""

    def tests(self) -> dict[str, Any]:
        return {"placeholder_secret": placeholder_secret}
