"""Kafka: Sentry traces in record headers, per record or per ``poll()`` batch.

sentry-python has no Kafka integration (its issue 2367), and OpenTelemetry's kafka-python
instrumentation ends the consumer span before the loop body runs and crashes on tuple headers.
Record headers are a list of ``(str, bytes)`` pairs, the destination is the topic, a record's id
is ``topic/partition/offset``, its timestamp (ms) gives the receive latency, and a record's
processing starts when the consumer returns it and ends when the loop asks for the next one.
That is the same for every client: :mod:`busprop.kafka._core` does it once, and a small module
per client library (:mod:`busprop.kafka._kafka_python`) says where that client keeps each thing.

- Producer: :func:`traced_producer` wraps a ``KafkaProducer``; :func:`producer` decorates a
  function that produces.
- Consumer: :func:`traced_consumer` for ``for record in ...`` loops (``async for`` with aiokafka,
  each record's processing owned by the task that asked for it), :func:`consumer` for handler
  functions, :func:`traced_records` for a ``poll()`` batch with one trace per record, and
  :func:`process_batch` for one transaction per batch with a child span per record.
- :class:`KafkaIntegration` patches ``KafkaProducer.send`` and consumer iteration; for
  confluent-kafka, whose ``Producer`` and ``Consumer`` are C types, it puts traced subclasses in
  place of ``confluent_kafka.Producer``/``Consumer`` (``produce``, ``poll``: each message's
  processing lasts until the next ``poll()``/``consume()``/``close()``).

busprop never commits offsets and never changes a record's key, value or other headers.
"""

from __future__ import annotations

from busprop.kafka._core import (
    BATCH_COUNT,
    CONSUMER_GROUP,
    KEY,
    LINK_SAMPLED,
    LINK_SPAN_ID,
    LINK_TRACE_ID,
    OFFSET,
    ORIGIN,
    PARTITION,
    SYSTEM,
    BatchProcessing,
    Headers,
    TracedProducer,
    consumer,
    header_list,
    process_batch,
    producer,
    record_processing,
    records_of,
    traced_consumer,
    traced_producer,
    traced_records,
    traced_send,
)
from busprop.kafka._integration import KafkaIntegration, install, uninstall

__all__ = [
    "BATCH_COUNT",
    "CONSUMER_GROUP",
    "KEY",
    "LINK_SAMPLED",
    "LINK_SPAN_ID",
    "LINK_TRACE_ID",
    "OFFSET",
    "ORIGIN",
    "PARTITION",
    "SYSTEM",
    "BatchProcessing",
    "Headers",
    "KafkaIntegration",
    "TracedProducer",
    "consumer",
    "header_list",
    "install",
    "process_batch",
    "producer",
    "record_processing",
    "records_of",
    "traced_consumer",
    "traced_producer",
    "traced_records",
    "traced_send",
    "uninstall",
]
