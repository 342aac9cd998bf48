use matroska_diesel::CacheModel;

#[derive(CacheModel)]
pub enum Post {
    Draft,
    Live,
}

fn main() {}
