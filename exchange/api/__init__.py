"""The bettor and operator HTTP API: Betfair API-NG shaped JSON-RPC over Ray Serve.

wire.py     msgspec types of the API-NG requests and replies (camelCase on the wire)
convert.py  pure x_to_y translations between API-NG shapes and our commands and views
            (decimal prices and currency units <-> ladder ticks and minor units)
limits.py   token buckets (per IP, per account, per IP for logins)
passwords.py argon2 hashing
openapi.py  the OpenAPI document generated from wire.py
app.py      the Serve deployment (routing, auth, limits, validation) and build_app
demo.py     an idempotent seed: a demo event, markets and funded accounts

Owns the edge only: money and orders live in the host actors (called through
actors/gateway.py), accounts, sessions and the catalogue in PostgreSQL
(exchange/storage/). Must never hold money state or call the domain directly.
"""
