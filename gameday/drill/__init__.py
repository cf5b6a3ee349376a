"""One drill, as the control and the activities run it: its context (gameday.drill.context),
what every activity shares, the checks before anything starts (preflight, the readiness
gate, plan mode, the verdict tolerances), putting the lab back (recovery) and the stop
conditions' watcher."""
