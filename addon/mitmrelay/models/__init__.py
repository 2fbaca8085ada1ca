"""Pydantic wire models, used at the boundaries only (never per streamed chunk)."""
