"""The Kafka journal: group-committed, fenced, snapshot-bounded event storage for hosts."""

from exchange.journal.kafka_journal import (
    Journal,
    JournalConfig,
    JournalFailed,
    RecoveredAggregate,
    delete_topics,
    ensure_topics,
    list_topics,
    read_partition,
)

__all__ = ["Journal", "JournalConfig", "JournalFailed", "RecoveredAggregate", "delete_topics", "ensure_topics",
           "list_topics", "read_partition"]
