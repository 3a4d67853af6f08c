"""Wheel build hook: ship tutormax/VERSION holding the version this wheel is built as."""

import tempfile
from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface


class CustomBuildHook(BuildHookInterface):  # type: ignore[type-arg]
    """Replace the source tree's VERSION with the build's version (TUTORMAX_VERSION may differ)."""

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        """Write the metadata version to a temporary file and force it into the wheel."""
        self._tmp = tempfile.TemporaryDirectory()
        path = Path(self._tmp.name) / "VERSION"
        path.write_text(self.metadata.version + "\n", encoding="utf-8")
        build_data["force_include"][str(path)] = "tutormax/VERSION"

    def finalize(self, version: str, build_data: dict[str, Any], artifact_path: str) -> None:
        """Remove the temporary VERSION file."""
        self._tmp.cleanup()
