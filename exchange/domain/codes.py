"""Reason codes: why a command or an instruction was refused.

Owns the names (Betfair API-NG's where one exists, so clients can reuse their
handling) and nothing else. Must never carry behaviour or messages for humans.
"""

from __future__ import annotations

# Instruction level (API-NG InstructionReportErrorCode)
INVALID_ODDS = "INVALID_ODDS"
INVALID_BET_SIZE = "INVALID_BET_SIZE"
INVALID_BACK_LAY_COMBINATION = "INVALID_BACK_LAY_COMBINATION"
BET_TAKEN_OR_LAPSED = "BET_TAKEN_OR_LAPSED"
INVALID_RUNNER = "INVALID_RUNNER"
INVALID_BID_TYPE = "INVALID_BID_TYPE"  # side is neither BACK nor LAY
INVALID_PERSISTENCE_TYPE = "INVALID_PERSISTENCE_TYPE"
INVALID_ORDER_TYPE = "INVALID_ORDER_TYPE"  # unknown time in force
INVALID_MIN_FILL_SIZE = "INVALID_MIN_FILL_SIZE"
INVALID_CUSTOMER_ORDER_REF = "INVALID_CUSTOMER_ORDER_REF"
NO_ACTION_REQUIRED = "NO_ACTION_REQUIRED"

# Execution level (API-NG ExecutionReportErrorCode)
MARKET_SUSPENDED = "MARKET_SUSPENDED"
MARKET_NOT_OPEN_FOR_BETTING = "MARKET_NOT_OPEN_FOR_BETTING"
INSUFFICIENT_FUNDS = "INSUFFICIENT_FUNDS"
DUPLICATE_TRANSACTION = "DUPLICATE_TRANSACTION"
INVALID_MARKET_ID = "INVALID_MARKET_ID"
INVALID_MARKET_VERSION = "INVALID_MARKET_VERSION"
TOO_MANY_INSTRUCTIONS = "TOO_MANY_INSTRUCTIONS"
PROCESSED_WITH_ERRORS = "PROCESSED_WITH_ERRORS"  # some instructions failed, some did not

# Ours (no API-NG equivalent)
INVALID_AMOUNT = "INVALID_AMOUNT"  # wallet: amount not a positive integer
INVALID_MARKET_STATE = "INVALID_MARKET_STATE"  # lifecycle transition not allowed
INVALID_WALLET_ID = "INVALID_WALLET_ID"  # command addressed to another wallet

ALL = frozenset(
    name for name, value in dict(globals()).items() if name.isupper() and isinstance(value, str)
)
