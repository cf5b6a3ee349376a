"""The vocabulary every layer shares, importing nothing else of gameday: the exception tree,
the interruption flag and the one bounded wait, the settings, the lab descriptor, the event
kinds and fault names, the driver protocols and the lab kinds, and the records on disk
beside the descriptor (the fault ledger, the drill state, the drill lock)."""
