"""Read: Parquet shards (documents, queries) and pair files as Ray Data sources, retried on flaky storage."""
