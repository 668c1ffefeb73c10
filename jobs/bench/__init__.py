"""The benchmark: `job` (command, contender runs), `contender` (one contender process), `contenders`, `batching`,
`corpus`, `measure`, `results`, `report`."""
