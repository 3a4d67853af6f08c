#!/usr/bin/python
# Copyright: TutorMax SRE team
# Apache License 2.0 (see galaxy.yml)
"""pgbackrest_info: one stanza of pgBackRest's repository, read as backups, ages and archive range."""

from __future__ import annotations

DOCUMENTATION = r"""
module: pgbackrest_info
short_description: The backups and WAL archive of one pgBackRest stanza, with their ages
description:
  - Runs C(pgbackrest --stanza=STANZA --output=json info) as O(user) (through C(runuser); no secret on the command
    line, pgBackRest reads its passphrase from its configuration) and reads the answer as the stanza's status, its
    backups, the age of the newest good full and differential backup, and the range of archived WAL (the filter
    C(tutormax.cluster.pgbackrest_summary) reads a saved answer the same way).
  - Changes nothing. The pgbackrest role (stanza setup), C(verify.yml) and C(playbooks/pg_restore.yml) use it.
version_added: 0.3.0
author: TutorMax SRE team (@tutormax)
options:
  stanza:
    description: The stanza to read.
    type: str
    required: true
  user:
    description: System user pgBackRest runs as on this host (the repository's own user on the repository host).
    type: str
    default: pgbackrest
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
  platform:
    platforms: posix
"""

EXAMPLES = r"""
- name: Read the repository
  tutormax.cluster.pgbackrest_info:
    stanza: tutormax
  register: backups
"""

RETURN = r"""
exists:
  description: Whether the stanza exists in the repository (false until C(stanza-create) ran).
  type: bool
  returned: always
summary:
  description:
    - C(ok), C(status), C(backups) (each C(label), C(type), C(start), C(stop), C(lsn_stop), C(size), C(repo_size),
      C(repo_delta), C(good)), C(count), C(failed), C(last_full) and C(last_diff) (C(label), C(type), C(stop),
      C(age_s); null when none), C(oldest), C(repo_backup_bytes) and C(archive) (C(min), C(max) WAL segment).
  type: dict
  returned: always
now:
  description: The host's clock (epoch seconds) the ages are counted at.
  type: float
  returned: always
"""

import json
import time
from typing import Any

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.tutormax.cluster.plugins.module_utils import pgbackrest

#: pgBackRest's status code of a stanza whose path does not exist in the repository yet.
MISSING_STANZA_PATH = 1


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "stanza": {"type": "str", "required": True},
            "user": {"type": "str", "default": "pgbackrest"},
        },
        supports_check_mode=True,
    )
    stanza, user = module.params["stanza"], module.params["user"]
    argv = ["runuser", "-u", user, "--", "pgbackrest", f"--stanza={stanza}", "--output=json", "info"]
    rc, out, err = module.run_command(argv, environ_update={"LC_ALL": "C"})
    if rc != 0:
        module.fail_json(msg=f"pgbackrest info failed (exit {rc}): {err.strip() or out.strip()}", rc=rc)
    now = time.time()
    try:
        info: Any = json.loads(out)
        summary = pgbackrest.summarize_info(info, stanza, now)
        code = next(e.get("status", {}).get("code") for e in info if isinstance(e, dict) and e.get("name") == stanza)
    except (ValueError, pgbackrest.PgBackRestError) as exc:
        module.fail_json(msg=f"pgbackrest info: {exc}")
    module.exit_json(changed=False, exists=code != MISSING_STANZA_PATH, summary=summary, now=now)


if __name__ == "__main__":
    main()
