//! The Diesel schema (the tables live in the schema the app is configured with).

diesel::table! {
    /// Authors.
    authors (id) {
        /// Primary key.
        id -> BigInt,
        /// Display name.
        name -> Text,
    }
}

diesel::table! {
    /// Articles.
    articles (id) {
        /// Primary key.
        id -> BigInt,
        /// The author.
        author_id -> BigInt,
        /// The category the article is listed in.
        category -> Text,
        /// Whether it appears in its category's list.
        published -> Bool,
        /// Title.
        title -> Text,
        /// Body.
        body -> Text,
    }
}

diesel::joinable!(articles -> authors (author_id));
diesel::allow_tables_to_appear_in_same_query!(articles, authors);
