"""Session-consistent random feeds: a keyed permutation of the catalog walked by a per-session cursor."""
