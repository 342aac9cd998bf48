-- clear: stamps the clear tag '*' (which every entry carries, first in `tags`): from its commit
-- on, no entry filled before is served. Returns the transaction, for the sweep.
INSERT INTO {{schema}}.stamps (tag, xid) VALUES ('*', pg_current_xact_id())
RETURNING xid::text
