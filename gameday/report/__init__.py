"""summary.json (the contract for CI and scripts) and the markdown report."""
