"""Serving: the HTTP protocol adapter over uvicorn and memory tuning of the serving process."""
