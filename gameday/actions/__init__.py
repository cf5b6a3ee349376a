"""Activities that change the world: region faults and their rollback, database promotion,
bounded waits."""
