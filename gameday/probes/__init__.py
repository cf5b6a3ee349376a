"""Activities that read the world: region health, DNS, replication, and verdict probes."""
