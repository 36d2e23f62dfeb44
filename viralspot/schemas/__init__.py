"""Marshmallow schemas: the response envelopes, query arguments and content items."""
