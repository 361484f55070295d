"""The OpenAPI document: it covers every route, and the app does what it says."""

import schemathesis
from hypothesis import HealthCheck, settings

from api import create_app

# schemathesis 4.32's from_fixture loader breaks on pytest 9.2 (it sets Node._nodeid), so the
# schema is loaded eagerly from an app built for collection; each test calls its own app.
schema = schemathesis.openapi.from_dict(
    create_app({"TESTING": True, "SQLALCHEMY_DATABASE_URI": "sqlite://"}).extensions["openapi"],
    config=schemathesis.Config.from_dict(
        {
            # The teapot's only right answer to a valid request is 418, nothing else.
            "operations": [
                {
                    "include-path": "/api/teapot",
                    "checks": {"positive_data_acceptance": {"expected-statuses": ["418"]}},
                }
            ]
        }
    ),
)

# The app is one running service for all of a test's examples, as a real one would be.
EXAMPLES = {
    "max_examples": 30,
    "deadline": None,
    "suppress_health_check": [HealthCheck.function_scoped_fixture],
}


@schema.parametrize()
@settings(**EXAMPLES)
def test_without_token(case, app):
    case.call_and_validate(app=app)


@schema.parametrize()
@settings(**EXAMPLES)
def test_with_token(case, app, auth_headers):
    case.call_and_validate(app=app, headers=auth_headers)
