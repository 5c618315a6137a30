"""The reference node: job protocol, roles (provider, aggregator, client), planner, local state.

See spec/job.md and spec/node.md. Sub-modules are imported explicitly; this package import is
kept light (no torch, no asyncio servers) so the CLI starts fast.
"""
