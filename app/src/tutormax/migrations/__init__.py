"""Alembic migrations, shipped inside the package.

``tutormax-migrate`` (no arguments: ``upgrade head``) or
``alembic -c $(python -c 'import tutormax.migrations as m; print(m.INI)') upgrade head`` runs them
with nothing but ``DATABASE_URL`` set.
"""

from pathlib import Path

#: The alembic.ini beside the migration scripts.
INI = str(Path(__file__).with_name("alembic.ini"))
