-- The fill token of a miss, whatever is stored (NULL: no epoch row).
SELECT {{schema}}.miss_token()
