"""Pages: layout of components, one module each."""
