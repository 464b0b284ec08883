"""Cluster DNS: the record index (pure) and the asyncio server."""
