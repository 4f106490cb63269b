"""Readers of foreign and native training logs; each module reads one family of formats.

Every reader exposes ``read(path, mapping=None) -> RunData`` with ``raw`` filled in read order;
``stabletrain.logs.read.read_run`` detects the format and cleans the records.
"""
