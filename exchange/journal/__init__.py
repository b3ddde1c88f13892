"""The Kafka journal: group-committed, fenced, snapshot-bounded event storage for hosts."""

from exchange.journal.kafka_journal import (
    Journal,
    JournalConfig,
    JournalFailed,
    RecoveredAggregate,
    create_topic,
    delete_topics,
    ensure_topics,
    kafka_admin,
    list_topics,
    read_partition,
)

__all__ = ["Journal", "JournalConfig", "JournalFailed", "RecoveredAggregate", "create_topic", "delete_topics",
           "ensure_topics", "kafka_admin", "list_topics", "read_partition"]
