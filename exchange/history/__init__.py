"""The history read model in PostgreSQL (DESIGN.md section 3, row 7: "database layer for
historical transactions"): cleared orders and account statements, written by the
jurisdiction's projector from its Kafka journals and read by the API.

store.py      the tables, the projector's one-transaction-per-batch write, the API's reads
projector.py  the tail of both journals, from stored positions
"""
