"""dlt sources (the layout of dlt's verified sources)."""
