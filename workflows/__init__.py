"""How Conclave answers: the chain-of-abstraction engine (``workflows.coa``), the team, methods and runners."""
