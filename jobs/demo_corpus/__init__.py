"""The demo-corpus command: `job` writes the offline demo corpus or a judged retrieval set."""
