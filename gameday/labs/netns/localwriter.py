"""Users inside a cut-off region who keep writing to their own database (stale DNS, a
region-local client): the writes a split brain costs.

Inserts canary rows with negative sequence numbers (so they never collide with the
recorder's canary) into the region's local database, and appends every acknowledged one,
with any server notice, to a file. A statement timeout turns a commit stuck waiting for an
unreachable synchronous standby into the "committed locally" acknowledgement that real
applications get.

Run: LOCAL_WRITER_CONNECT='{"host": ...}' LOCAL_WRITER_TABLE=gameday_canary \
     python -m gameday.labs.netns.localwriter ACK_FILE [INTERVAL_S]
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time

import psycopg

from gameday.postgres.canary import insert_sql


def main(argv: list[str]) -> None:
    ack_file = argv[0]
    interval = float(argv[1]) if len(argv) > 1 else 0.01
    params = json.loads(os.environ["LOCAL_WRITER_CONNECT"])  # psycopg.connect's keywords
    sql = insert_sql(os.environ["LOCAL_WRITER_TABLE"])  # the descriptor's canary table
    running = True

    def stop(*_: object) -> None:
        nonlocal running
        running = False

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    seq = -int(time.time() * 1000) * 1000  # distinct per start, always negative
    conn = None
    notices: list[str] = []
    with open(ack_file, "a", buffering=1) as acks:
        while running:
            if conn is None:
                try:
                    conn = psycopg.connect(**{**params, "connect_timeout": 1},
                                           autocommit=True, options="-c statement_timeout=1000")
                    conn.add_notice_handler(lambda d: notices.append(d.message_primary or ""))
                except psycopg.Error:
                    time.sleep(0.1)
                    continue
            seq -= 1
            notices.clear()
            try:
                conn.execute(sql, (seq, -1))
                acks.write(f"{seq}\t{time.time():.6f}\t{'; '.join(notices)}\n")
            except psycopg.Error:
                if conn.broken:
                    conn.close()
                    conn = None
            time.sleep(interval)
    if conn is not None:
        conn.close()


if __name__ == "__main__":
    main(sys.argv[1:])
