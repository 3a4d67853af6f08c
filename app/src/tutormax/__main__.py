"""``python -m tutormax {api,worker,beat,migrate} [ARGS...]``."""

from tutormax.cli import main

main()
