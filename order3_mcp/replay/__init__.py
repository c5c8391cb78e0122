"""Replay of fixture scenarios: the scenario format, the runner, matchers, reports and the session recorder.

Import the submodules directly (`order3_mcp.replay.runner`, ...); this package
module stays empty so that `order3_mcp.replay.clock` can be imported by every
command without loading the runner.
"""
