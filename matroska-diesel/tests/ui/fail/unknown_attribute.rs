use diesel::prelude::*;
use matroska_diesel::CacheModel;

diesel::table! { posts (id) { id -> BigInt, topic -> Text } }

#[derive(Queryable, Identifiable, CacheModel)]
#[diesel(table_name = posts)]
#[matroska(kinds = "post")]
pub struct Post {
    pub id: i64,
    pub topic: String,
}

fn main() {}
