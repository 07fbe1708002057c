"""Persistent state shared by every Fleetgate process.

One module per concept, imported directly by callers:

- :mod:`.database`: engines, migrations, transactions (``Database``);
- :mod:`.projects`: tenants;
- :mod:`.certificates`: CA certificates and the trust they give;
- :mod:`.devices`: device records;
- :mod:`.state`: LightDB State documents.

Every store function takes the :class:`~.database.Database` first and
returns frozen records, never live ORM rows, so callers hold no session.
Nothing is imported here, so that loading the models does not load the
certificate machinery.
"""
