-- Creates the epoch row when it is missing (first use, or after crash recovery emptied it).
SELECT {{schema}}.ensure_state()
