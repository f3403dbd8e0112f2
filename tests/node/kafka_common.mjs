// Shared by the kafka_*.mjs interop scripts: the kafkajs client they use.
export function kafkaClient(Kafka, bootstrap) {
  return new Kafka({ clientId: "busprop-node", brokers: [bootstrap], logLevel: 1, retry: { retries: 3 } });
}
