"""The sync engine: dirty listings → coalesced, batched, rate-limited pushes to every connected channel."""
