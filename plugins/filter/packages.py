# Copyright: TutorMax SRE team
# Apache License 2.0 (see galaxy.yml)
"""missing_packages: which of the wanted Debian packages dpkg does not have installed.

Roles that run on every host at the end of site.yml (the exporters, the journal upload) ask dpkg-query
first and call the apt module only for what is missing: loading apt's cache on every host at once
takes seconds of CPU per host, which on a busy cluster is a stall the serving path feels.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def missing_packages(wanted: Sequence[str], dpkg_query_stdout: str) -> list[str]:
    """The packages of ``wanted`` that ``dpkg-query --show --showformat='${Package} ${db:Status-Status}\\n'``
    did not report as ``installed`` (unknown, removed, half-installed, config-files ...)."""
    installed = set()
    for line in str(dpkg_query_stdout).splitlines():
        fields = line.split()
        if len(fields) == 2 and fields[1] == "installed":
            installed.add(fields[0].split(":", 1)[0])
    return [str(p) for p in wanted if str(p) not in installed]


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"missing_packages": missing_packages}
