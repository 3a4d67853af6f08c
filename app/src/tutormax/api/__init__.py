"""HTTP layer: FastAPI routes, error mapping, metrics. Calls ``tutormax.services`` only."""
