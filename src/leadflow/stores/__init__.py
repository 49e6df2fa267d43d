"""Storage backends: :mod:`leadflow.stores.memory` (the reference, no dependencies),
:mod:`leadflow.stores.sql` (the ``sql`` extra: SQLite and PostgreSQL) and
:mod:`leadflow.stores.mongo` (the ``mongo`` extra). The ports they implement are in
:mod:`leadflow.ports`; their contracts in :mod:`leadflow.testing`."""
