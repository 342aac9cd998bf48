-- The blog's tables, created in the schema the app is configured with (its search_path).
CREATE TABLE IF NOT EXISTS authors (
    id BIGSERIAL PRIMARY KEY,
    name TEXT NOT NULL
);

CREATE TABLE IF NOT EXISTS articles (
    id BIGSERIAL PRIMARY KEY,
    author_id BIGINT NOT NULL REFERENCES authors (id),
    category TEXT NOT NULL,
    published BOOLEAN NOT NULL,
    title TEXT NOT NULL,
    body TEXT NOT NULL
);

CREATE INDEX IF NOT EXISTS articles_category_published ON articles (category, published);
CREATE INDEX IF NOT EXISTS articles_author_id ON articles (author_id);
