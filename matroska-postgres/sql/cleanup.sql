-- One cleanup pass of at most $1 rows per step (see the function in ../migrations/).
SELECT r.expired, r.swept, r.pruned, r.strays, r.more FROM {{schema}}.cleanup($1) AS r
