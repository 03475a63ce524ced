"""Orders from every channel: ingest (normalise, status machine, stock effects), the inbox drain, fulfilment."""
