-- The index rows of a put ($5: its tags, without the clear tag) for the key `up` returns (the
-- upsert, which so runs first): the missing ones are added; the ones in place are locked
-- (`WHERE false`: not updated), so that cleanup does not remove them as strays while the put
-- commits.
INSERT INTO {{schema}}.tags AS t (tag, key)
SELECT unnest($5::text[]), up.key FROM up WHERE up.stored
ON CONFLICT (tag, key) DO UPDATE SET key = excluded.key WHERE false
