"""Storage backends: :mod:`leadflow.stores.memory` (the reference, no dependencies) and
:mod:`leadflow.stores.mongo` (the ``mongo`` extra). The ports they implement are in
:mod:`leadflow.ports`; their contracts in :mod:`leadflow.testing`."""
