//! The write helpers: inserts, updates and deletes that record what they touch.

use std::collections::HashMap;

use diesel::associations::HasTable;
use diesel::dsl::{
    AsSelect, Find, Returning, Select, Update, Values, delete as Delete, insert_into,
};
use diesel::expression::SelectableExpression;
use diesel::pg::{Pg, PgConnection};
use diesel::query_builder::{
    AsChangeset, AsQuery, AstPass, IntoUpdateTarget, Query, QueryFragment, QueryId,
};
use diesel::query_dsl::LoadQuery;
use diesel::query_dsl::methods::{FindDsl, SelectDsl};
use diesel::{Insertable, QueryResult, RunQueryDsl, Selectable, SelectableHelper, Table};
use matroska_core::Dep;

use crate::error::Error;
use crate::model::CacheModel;
use crate::modified::modified_columns;
use crate::tx::Tx;

/// How many times an update by filter is tried when rows keep entering its filter concurrently.
const UPDATE_ATTEMPTS: u32 = 3;

impl Tx<'_> {
    /// Inserts one row and returns it (`INSERT ... RETURNING`); records its id and the scopes it
    /// enters.
    ///
    /// # Errors
    ///
    /// The database's error.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use diesel::prelude::*;
    /// use matroska_diesel::CacheModel;
    ///
    /// diesel::table! { articles (id) { id -> BigInt, category -> Text, title -> Text } }
    ///
    /// #[derive(Queryable, Selectable, Identifiable, CacheModel)]
    /// #[diesel(table_name = articles)]
    /// #[matroska(scope(category))]
    /// struct Article { id: i64, category: String, title: String }
    ///
    /// # fn f(conn: &mut PgConnection) -> Result<(), matroska_diesel::Error> {
    /// let (article, invalidations) = matroska_diesel::transaction(conn, |tx| {
    ///     let values = (articles::category.eq("news"), articles::title.eq("Hello"));
    ///     tx.insert::<Article, _, _>(articles::table, values)
    /// })?;
    /// assert!(invalidations.deps().contains(Article::scope_category("news").dep()));
    /// # drop(invalidations.into_deps()); Ok(()) }
    /// ```
    pub fn insert<'q, M, T, V>(&mut self, table: T, values: V) -> Result<M, Error>
    where
        M: CacheModel + Selectable<Pg>,
        T: Table,
        V: Insertable<T>,
        Returning<Values<insert_into<T>, V>, AsSelect<M, Pg>>:
            Query + LoadQuery<'q, PgConnection, M>,
    {
        let mut rows = self.insert_many::<M, T, V>(table, values)?;
        rows.pop()
            .ok_or(Error::Database(diesel::result::Error::NotFound))
    }

    /// Inserts rows (a `Vec` or slice of insertable values, or one) and returns them; records
    /// their ids and the scopes they enter.
    ///
    /// # Errors
    ///
    /// The database's error.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use diesel::prelude::*;
    /// use matroska_diesel::CacheModel;
    ///
    /// diesel::table! { articles (id) { id -> BigInt, category -> Text, title -> Text } }
    ///
    /// #[derive(Queryable, Selectable, Identifiable, CacheModel)]
    /// #[diesel(table_name = articles)]
    /// #[matroska(scope(category))]
    /// struct Article { id: i64, category: String, title: String }
    ///
    /// # fn f(conn: &mut PgConnection) -> Result<(), matroska_diesel::Error> {
    /// let (articles, invalidations) = matroska_diesel::transaction(conn, |tx| {
    ///     let rows = vec![
    ///         (articles::category.eq("news"), articles::title.eq("One")),
    ///         (articles::category.eq("tech"), articles::title.eq("Two")),
    ///     ];
    ///     tx.insert_many::<Article, _, _>(articles::table, rows)
    /// })?;
    /// assert_eq!(articles.len(), 2);
    /// # drop(invalidations.into_deps()); Ok(()) }
    /// ```
    pub fn insert_many<'q, M, T, V>(&mut self, table: T, values: V) -> Result<Vec<M>, Error>
    where
        M: CacheModel + Selectable<Pg>,
        T: Table,
        V: Insertable<T>,
        Returning<Values<insert_into<T>, V>, AsSelect<M, Pg>>:
            Query + LoadQuery<'q, PgConnection, M>,
    {
        let (conn, mut recorder) = self.conn_and_record();
        let statement = diesel::insert_into(table).values(values);
        let rows: Vec<M> = statement.returning(M::as_returning()).get_results(conn)?;
        let scopes = M::cache_scopes();
        for row in &rows {
            recorder.record(scopes.invalidate_for(None, Some(row), None));
        }
        tracing::debug!(kind = M::KIND, rows = rows.len(), "inserted");
        Ok(rows)
    }

    /// Updates the row with primary key `id` and returns it (`None` if there is none). See
    /// [`update`](Tx::update).
    ///
    /// # Errors
    ///
    /// As [`update`](Tx::update).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use diesel::prelude::*;
    /// use matroska_diesel::CacheModel;
    ///
    /// diesel::table! { articles (id) { id -> BigInt, category -> Text, title -> Text } }
    ///
    /// #[derive(Queryable, Selectable, Identifiable, CacheModel)]
    /// #[diesel(table_name = articles)]
    /// #[matroska(scope(category))]
    /// struct Article { id: i64, category: String, title: String }
    ///
    /// # fn f(conn: &mut PgConnection) -> Result<(), matroska_diesel::Error> {
    /// let (renamed, invalidations) = matroska_diesel::transaction(conn, |tx| {
    ///     tx.update_by_id::<Article, _, _, _>(articles::table, 5_i64, articles::title.eq("New title"))
    /// })?;
    /// // Only the title changed: article 5 is invalidated, no list scope is.
    /// assert!(invalidations.deps().contains(&Article::dep_for_id(5)));
    /// # drop(invalidations.into_deps()); Ok(()) }
    /// ```
    pub fn update_by_id<'q, M, T, K, V>(
        &mut self,
        table: T,
        id: K,
        changes: V,
    ) -> Result<Option<M>, Error>
    where
        M: CacheModel + Selectable<Pg>,
        M::SelectExpression: QueryId,
        T: FindDsl<K>,
        Find<T, K>: IntoUpdateTarget + Clone + SelectDsl<AsSelect<M, Pg>>,
        Locked<Select<Find<T, K>, AsSelect<M, Pg>>>: LoadQuery<'q, PgConnection, M>,
        V: AsChangeset<Target = <Find<T, K> as HasTable>::Table> + Clone,
        V::Changeset: QueryFragment<Pg>,
        Update<Find<T, K>, V>: AsQuery,
        Returning<Update<Find<T, K>, V>, AsSelect<M, Pg>>: Query + LoadQuery<'q, PgConnection, M>,
    {
        let mut rows = self.update::<M, _, V>(table.find(id), changes)?;
        Ok(rows.pop())
    }

    /// Updates the rows `target` selects (a table, `table.filter(...)`, `table.find(id)`) with
    /// `changes`, and returns their new images (`UPDATE ... RETURNING`). Records the ids of the
    /// rows, and the scopes they left and entered.
    ///
    /// The columns the changeset assigns are read from it. When one of them is watched (part of a
    /// scope or of the primary key, see [`CacheModel::watches`]), or they cannot be told, the old
    /// images are read first, locked, with the same filter (`SELECT ... FOR UPDATE` in a
    /// savepoint); rows that entered the filter concurrently between that read and the update
    /// make the savepoint roll back and the update run again (at most three times). When no
    /// watched column is assigned, only the ids are recorded and the update is one statement.
    ///
    /// The filter must be deterministic (no `random()`).
    ///
    /// # Errors
    ///
    /// The database's error; [`Error::Conflict`] when rows kept entering the filter concurrently.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use diesel::prelude::*;
    /// use matroska_diesel::CacheModel;
    ///
    /// diesel::table! { articles (id) { id -> BigInt, category -> Text, published -> Bool } }
    ///
    /// #[derive(Queryable, Selectable, Identifiable, CacheModel)]
    /// #[diesel(table_name = articles)]
    /// #[matroska(scope(category, published))]
    /// struct Article { id: i64, category: String, published: bool }
    ///
    /// # fn f(conn: &mut PgConnection) -> Result<(), matroska_diesel::Error> {
    /// // Unpublish all of "tech": each row leaves (tech, true) and enters (tech, false).
    /// let (rows, invalidations) = matroska_diesel::transaction(conn, |tx| {
    ///     let target = articles::table.filter(articles::category.eq("tech"));
    ///     tx.update::<Article, _, _>(target, articles::published.eq(false))
    /// })?;
    /// let left = Article::scope_category_published("tech", true);
    /// assert!(rows.is_empty() || invalidations.deps().contains(left.dep()));
    /// # drop(invalidations.into_deps()); Ok(()) }
    /// ```
    pub fn update<'q, M, Tgt, V>(&mut self, target: Tgt, changes: V) -> Result<Vec<M>, Error>
    where
        M: CacheModel + Selectable<Pg>,
        M::SelectExpression: QueryId,
        Tgt: IntoUpdateTarget + Clone + SelectDsl<AsSelect<M, Pg>>,
        Locked<Select<Tgt, AsSelect<M, Pg>>>: LoadQuery<'q, PgConnection, M>,
        V: AsChangeset<Target = Tgt::Table> + Clone,
        V::Changeset: QueryFragment<Pg>,
        Update<Tgt, V>: AsQuery,
        Returning<Update<Tgt, V>, AsSelect<M, Pg>>: Query + LoadQuery<'q, PgConnection, M>,
    {
        let modified = modified_columns(&changes.clone().as_changeset());
        let needs_old = modified
            .as_ref()
            .is_none_or(|columns| columns.iter().any(|c| M::watches(c)));
        let modified_refs: Option<Vec<&str>> = modified
            .as_ref()
            .map(|columns| columns.iter().map(String::as_str).collect());
        let modified_refs = modified_refs.as_deref();
        let scopes = M::cache_scopes();

        if !needs_old {
            let (conn, mut recorder) = self.conn_and_record();
            let rows: Vec<M> = diesel::update(target)
                .set(changes)
                .returning(M::as_returning())
                .get_results(conn)?;
            for row in &rows {
                recorder.record(scopes.invalidate_for(Some(row), Some(row), modified_refs));
            }
            tracing::debug!(kind = M::KIND, rows = rows.len(), ?modified, "updated");
            return Ok(rows);
        }

        for attempt in 1..=UPDATE_ATTEMPTS {
            let outcome = self.savepoint(|sp| {
                let (conn, mut recorder) = sp.conn_and_record();
                let old: Vec<M> = Locked(target.clone().select(M::as_select())).load(conn)?;
                let new: Vec<M> = diesel::update(target.clone())
                    .set(changes.clone())
                    .returning(M::as_returning())
                    .get_results(conn)?;
                // The locked rows still match and are all updated; more updated rows than locked
                // ones entered the filter concurrently, and their old images are unknown.
                if new.len() > old.len() {
                    return Err(Error::Conflict { attempts: attempt });
                }
                recorder.record(pair_images(&old, &new, modified_refs));
                Ok(new)
            });
            match outcome {
                Ok(rows) => {
                    tracing::debug!(kind = M::KIND, rows = rows.len(), ?modified, "updated");
                    return Ok(rows);
                }
                Err(Error::Conflict { .. }) if attempt < UPDATE_ATTEMPTS => {
                    tracing::debug!(
                        kind = M::KIND,
                        attempt,
                        "rows entered the filter concurrently; retrying"
                    );
                }
                Err(err) => return Err(err),
            }
        }
        Err(Error::Conflict {
            attempts: UPDATE_ATTEMPTS,
        })
    }

    /// Deletes the row with primary key `id` and returns it (`None` if there was none). See
    /// [`delete`](Tx::delete).
    ///
    /// # Errors
    ///
    /// The database's error.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use diesel::prelude::*;
    /// use matroska_diesel::CacheModel;
    ///
    /// diesel::table! { articles (id) { id -> BigInt, category -> Text } }
    ///
    /// #[derive(Queryable, Selectable, Identifiable, CacheModel)]
    /// #[diesel(table_name = articles)]
    /// #[matroska(scope(category))]
    /// struct Article { id: i64, category: String }
    ///
    /// # fn f(conn: &mut PgConnection) -> Result<(), matroska_diesel::Error> {
    /// let (gone, invalidations) = matroska_diesel::transaction(conn, |tx| {
    ///     tx.delete_by_id::<Article, _, _>(articles::table, 5_i64)
    /// })?;
    /// # drop(invalidations.into_deps()); Ok(()) }
    /// ```
    pub fn delete_by_id<'q, M, T, K>(&mut self, table: T, id: K) -> Result<Option<M>, Error>
    where
        M: CacheModel + Selectable<Pg>,
        T: FindDsl<K>,
        Find<T, K>: IntoUpdateTarget,
        AsSelect<M, Pg>: SelectableExpression<<Find<T, K> as HasTable>::Table>,
        Returning<Delete<Find<T, K>>, AsSelect<M, Pg>>: Query + LoadQuery<'q, PgConnection, M>,
    {
        let mut rows = self.delete::<M, _>(table.find(id))?;
        Ok(rows.pop())
    }

    /// Deletes the rows `target` selects and returns them (`DELETE ... RETURNING`); records their
    /// ids and the scopes they left.
    ///
    /// # Errors
    ///
    /// The database's error.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use diesel::prelude::*;
    /// use matroska_diesel::CacheModel;
    ///
    /// diesel::table! { articles (id) { id -> BigInt, category -> Text } }
    ///
    /// #[derive(Queryable, Selectable, Identifiable, CacheModel)]
    /// #[diesel(table_name = articles)]
    /// #[matroska(scope(category))]
    /// struct Article { id: i64, category: String }
    ///
    /// # fn f(conn: &mut PgConnection) -> Result<(), matroska_diesel::Error> {
    /// let (gone, invalidations) = matroska_diesel::transaction(conn, |tx| {
    ///     tx.delete::<Article, _>(articles::table.filter(articles::category.eq("spam")))
    /// })?;
    /// # drop(invalidations.into_deps()); Ok(()) }
    /// ```
    pub fn delete<'q, M, Tgt>(&mut self, target: Tgt) -> Result<Vec<M>, Error>
    where
        M: CacheModel + Selectable<Pg>,
        Tgt: IntoUpdateTarget,
        AsSelect<M, Pg>: SelectableExpression<Tgt::Table>,
        Returning<Delete<Tgt>, AsSelect<M, Pg>>: Query + LoadQuery<'q, PgConnection, M>,
    {
        let (conn, mut recorder) = self.conn_and_record();
        let rows: Vec<M> = diesel::delete(target)
            .returning(M::as_returning())
            .get_results(conn)?;
        let scopes = M::cache_scopes();
        for row in &rows {
            recorder.record(scopes.invalidate_for(Some(row), None, None));
        }
        tracing::debug!(kind = M::KIND, rows = rows.len(), "deleted");
        Ok(rows)
    }
}

/// The dependencies of an update from its old and new images: rows are paired by id; a row
/// whose id changed counts as a delete of the old image and an insert of the new one.
fn pair_images<M: CacheModel>(old: &[M], new: &[M], modified: Option<&[&str]>) -> Vec<Dep> {
    let scopes = M::cache_scopes();
    let mut old_by_id: HashMap<Dep, &M> = old.iter().map(|row| (row.id_dep(), row)).collect();
    let mut deps = Vec::new();
    for row in new {
        match old_by_id.remove(&row.id_dep()) {
            Some(before) => deps.extend(scopes.invalidate_for(Some(before), Some(row), modified)),
            None => deps.extend(scopes.invalidate_for(None, Some(row), None)),
        }
    }
    for before in old_by_id.into_values() {
        deps.extend(scopes.invalidate_for(Some(before), None, None));
    }
    deps
}

/// `SELECT ... FOR UPDATE`, for any select statement (Diesel's own `for_update` cannot be named
/// in generic code).
#[derive(Debug, Clone, Copy)]
pub struct Locked<Q>(Q);

impl<Q: Query> Query for Locked<Q> {
    type SqlType = Q::SqlType;
}

impl<Q: QueryId> QueryId for Locked<Q> {
    type QueryId = Locked<Q::QueryId>;
    const HAS_STATIC_QUERY_ID: bool = Q::HAS_STATIC_QUERY_ID;
}

impl<Q: QueryFragment<Pg>> QueryFragment<Pg> for Locked<Q> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        self.0.walk_ast(out.reborrow())?;
        out.push_sql(" FOR UPDATE");
        Ok(())
    }
}

impl<Q> RunQueryDsl<PgConnection> for Locked<Q> {}

#[cfg(test)]
mod tests {
    use std::sync::LazyLock;

    use matroska_core::Scopes;

    use super::*;

    #[derive(Debug, Clone)]
    struct Row {
        id: i64,
        category: &'static str,
    }

    impl CacheModel for Row {
        const KIND: &'static str = "row";
        const PRIMARY_KEY: &'static [&'static str] = &["id"];

        fn cache_scopes() -> &'static Scopes<Self> {
            static SCOPES: LazyLock<Scopes<Row>> = LazyLock::new(|| {
                Scopes::new("row")
                    .id(|r: &Row| r.id)
                    .describe(["category"], |r: &Row| r.category)
                    .fields(&["title"])
            });
            &SCOPES
        }

        fn id_dep(&self) -> Dep {
            Dep::id(Self::KIND, self.id)
        }
    }

    fn row(id: i64, category: &'static str) -> Row {
        Row { id, category }
    }

    fn scope(category: &str) -> Dep {
        Row::cache_scopes()
            .condition([("category", category.into())])
            .unwrap()
    }

    #[test]
    fn rows_pair_by_id() {
        let deps = pair_images(
            &[row(1, "a"), row(2, "a")],
            &[row(2, "b"), row(1, "b")],
            Some(&["category"]),
        );
        for dep in [
            Row::dep_for_id(1),
            Row::dep_for_id(2),
            scope("a"),
            scope("b"),
        ] {
            assert!(deps.contains(&dep), "{dep}");
        }
    }

    #[test]
    fn a_changed_id_is_a_delete_and_an_insert() {
        // `modified` names no scope field, yet both rows' scopes are touched.
        let deps = pair_images(&[row(1, "a")], &[row(7, "b")], Some(&["id"]));
        for dep in [
            Row::dep_for_id(1),
            Row::dep_for_id(7),
            scope("a"),
            scope("b"),
        ] {
            assert!(deps.contains(&dep), "{dep}");
        }
    }

    #[test]
    fn unmodified_scopes_are_left_alone() {
        let deps = pair_images(&[row(1, "a")], &[row(1, "a")], Some(&["title"]));
        assert!(!deps.contains(&scope("a")));
        assert!(deps.contains(&Row::dep_for_id(1)));
    }
}
