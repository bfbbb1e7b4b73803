"""Deployment files: the nginx template and the launcher behind `make prod`."""
