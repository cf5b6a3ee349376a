"""The run's timeline store: the only code that reads or writes timeline.sqlite.

    timeline    the tables (a row type each), the file, its meta, the writer, the clock
    queries     the runner's questions while a run goes on (the waits, the watcher, the
                live view, the probes)
    reader      a stored run for the measures: events, streams read a window at a time
    seqsets     sets of canary numbers found by SQL aggregates
    writes      the write accounting, counted where the canary and the final rows lie
"""
