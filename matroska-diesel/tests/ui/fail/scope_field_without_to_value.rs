use diesel::prelude::*;
use matroska_diesel::CacheModel;

diesel::table! { posts (id) { id -> BigInt, score -> Double } }

#[derive(Queryable, Identifiable, CacheModel)]
#[diesel(table_name = posts)]
#[matroska(scope(score))]
pub struct Post {
    pub id: i64,
    pub score: f64,
}

fn main() {}
