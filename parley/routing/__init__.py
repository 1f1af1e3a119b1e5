"""Routing (ACD for chat): queues and skill groups, entry rules, strategies, atomic assignment, transfers."""
