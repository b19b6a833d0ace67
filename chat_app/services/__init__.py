"""Domain logic in plain Python: no Reflex, no FastAPI (STYLE 1)."""
