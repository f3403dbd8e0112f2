"""busprop: Sentry distributed traces across message buses.

sentry-sdk continues a trace over HTTP from two headers, ``sentry-trace`` and ``baggage``. busprop
carries the same two values in message metadata (Kafka, AMQP, Celery, WebSockets, or any bus you
point it at) and continues them on the consumer side, so one trace, with one head-based sampling
decision, spans every hop. The transport-agnostic core is exported here; adapters live in
``busprop.<transport>`` modules.
"""

from busprop.carrier import CarrierKeys, IncomingTrace, extract
from busprop.config import Config, ConfigurationError, configure, get_config
from busprop.decorators import consumer, producer
from busprop.processing import MessageProcessing, continue_trace, propagation_scope
from busprop.publishing import Publishing, inject, publish

__version__ = "0.1.0"

__all__ = [
    "CarrierKeys",
    "Config",
    "ConfigurationError",
    "IncomingTrace",
    "MessageProcessing",
    "Publishing",
    "__version__",
    "configure",
    "consumer",
    "continue_trace",
    "extract",
    "get_config",
    "inject",
    "producer",
    "propagation_scope",
    "publish",
]
