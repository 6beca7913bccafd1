"""Shared utilities at the bottom of the package: errors, atomic writes, hashing, the shard store, Ray dispatch.

Nothing here imports another influcoder package; every stage may import from here.
"""
