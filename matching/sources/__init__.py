"""Where account snapshots come from: a Parquet file today, Redis (snapshot + stream) later."""
