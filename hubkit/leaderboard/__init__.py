"""The leaderboard: suites as data, the runner, records, the queue and table, trade-off plots."""
