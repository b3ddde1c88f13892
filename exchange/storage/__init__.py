"""PostgreSQL stores: platform data (accounts, sessions, catalogue) in platform.py."""
