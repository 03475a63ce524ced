"""Faithful stand-ins for the marketplaces: ASGI apps that speak each platform's documented API (paths, envelopes,
signatures, limits, errors, signed pushes), for tests, the demo and the benchmarks. Never used against real shops."""
