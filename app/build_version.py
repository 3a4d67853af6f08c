"""Version for the build backend: TUTORMAX_VERSION if set, else src/tutormax/VERSION.

Lets a release pipeline build the same source as another version (e.g. 1.0.1 for a rolling-update
test) without editing any file. hatch_build.py writes the resulting version into the wheel's
tutormax/VERSION, so the installed package reports the version it was built as.
"""

import os
from pathlib import Path

__version__ = (
    os.environ.get("TUTORMAX_VERSION", "").strip()
    or (Path(__file__).parent / "src" / "tutormax" / "VERSION").read_text(encoding="utf-8").strip()
)
