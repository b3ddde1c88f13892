"""The rulebook of the exchange: pure, deterministic Python.

Owns: the price ladder, money arithmetic, orders, the per-runner order book,
matching, the market and wallet aggregates (decide/evolve), exposure,
settlement, the wire types (commands, events, results) and the reason codes.

Must never: import ray, asyncio, Kafka, database or network clients; read the
clock or a random source; raise on a user's input (a refusal is a result with a
reason code). ``tests/unit/test_domain_purity.py`` enforces the imports.
"""
