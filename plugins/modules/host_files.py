#!/usr/bin/python
# Copyright: TutorMax SRE team
# Apache License 2.0 (see galaxy.yml)
"""host_files: a host's directories and small files, converged in one call."""

from __future__ import annotations

DOCUMENTATION = r"""
module: host_files
short_description: Converge several directories and small files of a host in one call
description:
  - Creates the O(directories) and writes the O(files) (content given, usually rendered on the controller with the
    C(ansible.builtin.template) lookup), each with its owner, group and mode, in one remote call per host instead of
    one or two per file. A file is written atomically (a temporary file beside it, checked with its C(validate)
    command first, then renamed); a file whose content is the same only gets its owner and mode set.
  - Directories come first, so files may go into directories of the same call.
  - The roles use it for their baseline files (the common role's limits, kernel settings, journald, locale); handlers
    look at RV(changed_paths) to act on the files that changed.
version_added: 0.2.0
author: TutorMax SRE team (@tutormax)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
  platform:
    platforms: posix
options:
  directories:
    description: Directories to create (with their parents) or fix the owner and mode of.
    type: list
    elements: dict
    default: []
    suboptions:
      path:
        description: Absolute path.
        type: path
        required: true
      owner:
        description: Owner.
        type: str
        default: root
      group:
        description: Group.
        type: str
        default: root
      mode:
        description: Octal mode as a string, for example V('0755').
        type: str
        required: true
  files:
    description: Files to write.
    type: list
    elements: dict
    default: []
    suboptions:
      path:
        description: Absolute path.
        type: path
        required: true
      content:
        description: The whole content.
        type: str
        required: true
      owner:
        description: Owner.
        type: str
        default: root
      group:
        description: Group.
        type: str
        default: root
      mode:
        description: Octal mode as a string, for example V('0644').
        type: str
        required: true
      validate:
        description: Command that must accept the new content before it replaces the file; C(%s) is the temporary file.
        type: str
        default: ""
notes:
  - Not for secrets with a diff shown; keep files that hold secrets in a task of their own with C(no_log).
"""

EXAMPLES = r"""
- name: Write the baseline's directories and files
  tutormax.cluster.host_files:
    directories:
      - {path: /etc/systemd/journald.conf.d, mode: "0755"}
    files:
      - path: /etc/systemd/journald.conf.d/tutormax.conf
        content: "{{ lookup('ansible.builtin.template', 'etc/systemd/journald.conf.d/tutormax.conf.j2') }}"
        mode: "0644"
  register: baseline
  notify: Restart journald
"""

RETURN = r"""
changed_paths:
  description: Paths created or changed (would be, in check mode), directories first.
  returned: always
  type: list
  elements: str
changes:
  description: Per changed path, what differed (C(created), C(content), C(owner), C(mode)).
  returned: always
  type: dict
  sample: {"/etc/default/locale": ["content"]}
"""

from pathlib import Path
from typing import Any

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.tutormax.cluster.plugins.module_utils import file_set as hf


def _check(module: AnsibleModule, items: list[dict[str, Any]], kind: str) -> None:
    seen = set()
    for index, item in enumerate(items):
        path = item["path"]
        if not str(path).startswith("/"):
            module.fail_json(msg=f"{kind}[{index}].path must be absolute (got {path!r})")
        if path in seen:
            module.fail_json(msg=f"{kind}[{index}].path {path} is given twice")
        seen.add(path)
        try:
            hf.mode_of(item["mode"])
        except hf.FileError as exc:
            module.fail_json(msg=f"{kind}[{index}].{exc}")
        if kind == "files" and item.get("validate") and "%s" not in item["validate"]:
            module.fail_json(msg=f"files[{index}].validate must contain %s (the file to check)")


def main() -> None:
    entry = {"path": {"type": "path", "required": True}, "owner": {"type": "str", "default": "root"},
             "group": {"type": "str", "default": "root"}, "mode": {"type": "str", "required": True}}  # fmt: skip
    module = AnsibleModule(
        argument_spec={
            "directories": {"type": "list", "elements": "dict", "default": [], "options": entry},
            "files": {
                "type": "list",
                "elements": "dict",
                "default": [],
                "options": {
                    **entry,
                    "content": {"type": "str", "required": True},
                    "validate": {"type": "str", "default": ""},
                },
            },
        },
        supports_check_mode=True,
    )
    directories, files = module.params["directories"], module.params["files"]
    _check(module, directories, "directories")
    _check(module, files, "files")

    changes: dict[str, list[str]] = {}
    diffs: list[dict[str, str]] = []

    def converge(item: dict[str, Any], is_dir: bool) -> None:
        try:
            uid, gid = hf.ids(item["owner"], item["group"])
        except hf.FileError:
            if module.check_mode:  # the owner may be created by a task check mode only announced
                changes[item["path"]] = ["created"]
                return
            raise
        found = (hf.directory_changes if is_dir else hf.file_changes)(item, uid, gid)
        if not found:
            return
        changes[item["path"]] = found
        if is_dir:
            before, after = "" if "created" in found else "(directory)\n", f"(directory {item['mode']})\n"
        else:
            before, after = hf.text_of(Path(item["path"])), item["content"]
        diffs.append({"before_header": item["path"], "after_header": item["path"], "before": before, "after": after})
        if module.check_mode:
            return
        if is_dir:
            hf.make_directory(item, uid, gid)
        else:
            hf.write_file(item, uid, gid, found)

    try:
        for item in directories:
            converge(item, is_dir=True)
        for item in files:
            converge(item, is_dir=False)
    except (hf.FileError, OSError) as exc:
        module.fail_json(msg=str(exc), changed=bool(changes), changed_paths=list(changes), changes=changes)

    result: dict[str, Any] = {"changed": bool(changes), "changed_paths": list(changes), "changes": changes}
    if module._diff and diffs:
        result["diff"] = diffs
    module.exit_json(**result)


if __name__ == "__main__":
    main()
