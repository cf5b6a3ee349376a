"""The recorder (samplers on one monotonic clock, crash-safe storage) and the metrics."""
