"""What the tests and the benchmarks both need (never shipped, never imported by services).

- ``fakes/``: the fake Twilio (checked against Twilio's vendored OpenAPI description in
  ``fakes/reference/``) and the fake OpenAI server;
- ``webhooks``: Twilio-shaped webhook forms and signing for in-process services;
- ``stack``: real nats-server + Postgres and real service processes (``python -m services.x``);
- ``stack_webhooks``: signed inbound requests for that stack (its account, token and public URL);
- ``observe``: watching the bus (``EventTap``, ``read_stream``).

``tests/`` and ``bench/`` both import from here and never from each other
(tests/test_import_layers.py); nothing here imports ``tests`` or ``bench``.
"""
