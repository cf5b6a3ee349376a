"""The embedded netns lab: two regions, a global DNS and real PostgreSQL replication in
network namespaces on one Linux box, no Docker."""
