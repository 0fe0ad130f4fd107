"""Helpers the tests share (paths to ../shared, corpus specs, the round trip, parser_eval, a local Hub, grammar
checks, ...): imported as `helpers.NAME`, never collected as tests, and kept apart from the test modules' names."""
