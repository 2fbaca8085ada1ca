"""The sans-IO translation core: no mitmproxy, no sockets, no clock, no randomness.

What is not pure (ids, time, keys) is injected by the caller.
"""
