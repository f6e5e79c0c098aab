"""Real test services (Kafka broker, Milvus server) and tool fetchers shared by tests, benchmarks and the demo."""
