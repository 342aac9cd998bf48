use diesel::prelude::*;
use matroska_diesel::CacheModel;

diesel::table! { posts (id) { id -> BigInt, topic -> Text, live -> Bool } }

#[derive(Queryable, Identifiable, CacheModel)]
#[diesel(table_name = posts)]
#[matroska(scope(topic, live), scope(live, topic))]
pub struct Post {
    pub id: i64,
    pub topic: String,
    pub live: bool,
}

fn main() {}
