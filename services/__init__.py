"""The services, one package each. This tuple is the fleet's one registry.

Every tool that iterates the services (``replyline run/dev/migrate``, ingest's
system health, the benchmark stack, the tests' fleet fixtures) reads it; each
service exports its :class:`libs.service.ServiceSpec` as ``SPEC`` from
``services/<name>/service.py`` (load it with :func:`replyline.services.load_spec`).
Adding a service: its package, its name here, and the places the consistency test
(tests/test_service_registry.py) names outside Python (compose, NATS users, DESIGN.md).
Importing this package imports no service.
"""

#: Listing order (CLI help, system health); launchers choose their own start order.
SERVICES = ("ingest", "router", "drafter", "sender", "scheduler")
