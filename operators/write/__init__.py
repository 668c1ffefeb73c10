"""Write: Lance fragments on workers, one committer on the driver, the run ledger, the table lock, upkeep."""
