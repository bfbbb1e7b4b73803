"""The chat flow as plain Python: build context, stream, persist. No Reflex imports."""
