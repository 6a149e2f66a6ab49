"""Golden wire bytes: one encoded message of each type (see make_golden.py and docs/wire.md)."""
