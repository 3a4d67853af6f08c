"""Property-based tests of the whole HTTP API from its OpenAPI schema, against a running instance:
no input gives a 5xx, and responses match the documented status codes and schemas. Bounded: a
fixed number of examples per operation, no shrinking.

The schema is built from the application object at collection time (building the app connects to
nothing), and every generated request goes to the real uvicorn instance api-a.
"""

from __future__ import annotations

import os

import schemathesis
from hypothesis import HealthCheck, Phase, settings

from tutormax.api.app import create_app
from tutormax.settings import Settings

#: Examples per operation; raise it (TUTORMAX_SCHEMATHESIS_EXAMPLES=500) for a deeper run.
EXAMPLES = int(os.environ.get("TUTORMAX_SCHEMATHESIS_EXAMPLES", "25"))

_app = create_app(Settings(database_url="postgresql://u:p@127.0.0.1:1/x", redis_url="redis://127.0.0.1:1/0"))
schema = schemathesis.openapi.from_dict(_app.openapi())


def test_schema_covers_every_route() -> None:
    assert len(list(schema.get_all_operations())) == 14


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)
def test_api_never_answers_5xx_and_matches_its_schema(case: schemathesis.Case, apps: tuple[str, str]) -> None:
    case.call_and_validate(base_url=apps[0], timeout=15)
