"""The Qualys API side: HTTP client, retries, refusals, hardened streaming XML, and each API the connector calls."""
