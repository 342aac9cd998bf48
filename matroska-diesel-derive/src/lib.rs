//! Derive macros of [`matroska-diesel`](https://docs.rs/matroska-diesel). This crate is internal:
//! use the macros through `matroska-diesel`, which re-exports them and documents them in full.
//!
//! The code is laid out as parse, then validate into a `model::Model`, then expand: every
//! attribute error is found before any code is generated, and points at the attribute.

mod attrs;
mod expand;
mod model;

use proc_macro::TokenStream;
use syn::DeriveInput;

/// Implements `CacheModel` and `CacheDeps` for a Diesel model that derives `Identifiable`.
///
/// Struct attributes, all optional, in `#[matroska(...)]`:
///
/// - `kind = "article"`: the entity kind of ids and scopes (default: the table name, from
///   `#[diesel(table_name = ...)]` or Diesel's default);
/// - `scope(field, ...)`, repeatable: a field set that lists are filtered by; generates the
///   typed filter `Model::scope_<field>_<...>(values...) -> ScopeFilter<...>`;
/// - `nested(field, ...)`: fields holding loaded relations (models, `Vec`s or `Option`s of
///   them) whose dependencies a cached value of this model carries;
/// - `crate = "path"`: where `matroska_diesel` is (default `::matroska_diesel`).
#[proc_macro_derive(CacheModel, attributes(matroska))]
pub fn derive_cache_model(input: TokenStream) -> TokenStream {
    expand_with(input, cache_model_inner)
}

/// Implements `CacheDeps` for a struct that holds models (a page, a join result): its
/// dependencies are those of the fields named in `#[matroska(nested(field, ...))]`.
#[proc_macro_derive(CacheDeps, attributes(matroska))]
pub fn derive_cache_deps(input: TokenStream) -> TokenStream {
    expand_with(input, cache_deps_inner)
}

fn expand_with(
    input: TokenStream,
    inner: fn(&DeriveInput) -> syn::Result<proc_macro2::TokenStream>,
) -> TokenStream {
    match syn::parse::<DeriveInput>(input).and_then(|input| inner(&input)) {
        Ok(tokens) => tokens.into(),
        Err(err) => err.to_compile_error().into(),
    }
}

fn cache_model_inner(input: &DeriveInput) -> syn::Result<proc_macro2::TokenStream> {
    let model = model::Model::from_input(input, model::Derive::CacheModel)?;
    Ok(expand::cache_model(&model))
}

fn cache_deps_inner(input: &DeriveInput) -> syn::Result<proc_macro2::TokenStream> {
    let model = model::Model::from_input(input, model::Derive::CacheDeps)?;
    Ok(expand::cache_deps(&model))
}

#[cfg(test)]
mod tests {
    use quote::quote;

    use super::*;

    fn model(input: proc_macro2::TokenStream) -> syn::Result<proc_macro2::TokenStream> {
        cache_model_inner(&syn::parse2(input)?)
    }

    fn error(input: proc_macro2::TokenStream) -> String {
        match model(input) {
            Ok(tokens) => panic!("expected an error, got {tokens}"),
            Err(err) => err.to_string(),
        }
    }

    #[test]
    fn expansion_is_wrapped_and_fully_qualified() {
        let out = model(quote! {
            #[diesel(table_name = crate::schema::articles, check_for_backend(diesel::pg::Pg))]
            #[matroska(scope(category, published), nested(author))]
            pub struct Article { id: i64, category: String, published: bool, author: Author }
        })
        .unwrap()
        .to_string();
        assert!(out.starts_with("const _ : () ="), "{out}");
        assert!(
            out.contains(":: matroska_diesel :: CacheModel for Article"),
            "{out}"
        );
        assert!(
            out.contains("const KIND : & 'static str = \"articles\""),
            "{out}"
        );
        assert!(out.contains("pub fn scope_category_published"), "{out}");
        assert!(
            out.contains("crate :: schema :: articles :: category"),
            "{out}"
        );
    }

    #[test]
    fn kind_and_table_are_inferred_like_diesel() {
        let out = model(quote! { struct BlogPost { id: i32 } })
            .unwrap()
            .to_string();
        assert!(out.contains("\"blog_posts\""), "{out}");
        let out = model(quote! {
            #[matroska(kind = "post", crate = "my::md")]
            struct BlogPost { id: i32 }
        })
        .unwrap()
        .to_string();
        assert!(out.contains("\"post\""), "{out}");
        assert!(out.contains("my :: md :: CacheModel"), "{out}");
    }

    #[test]
    fn column_names_and_primary_keys_follow_diesel_attributes() {
        let out = model(quote! {
            #[diesel(primary_key(order_id, line))]
            #[matroska(scope(kind_of))]
            struct OrderLine {
                order_id: i32,
                line: i32,
                #[diesel(column_name = "type")]
                kind_of: String,
            }
        })
        .unwrap()
        .to_string();
        assert!(out.contains("[\"order_id\" , \"line\"]"), "{out}");
        assert!(out.contains("\"type\""), "{out}");
        assert!(out.contains("order_lines :: r#type"), "{out}");
    }

    #[test]
    fn attribute_errors() {
        let cases = [
            (
                quote! { #[matroska(kinds = "a")] struct A { id: i32 } },
                "unknown",
            ),
            (
                quote! { #[matroska(scope(nope))] struct A { id: i32 } },
                "no field `nope`",
            ),
            (
                quote! { #[matroska(scope())] struct A { id: i32 } },
                "at least one field",
            ),
            (
                quote! { #[matroska(scope(a, b), scope(b, a))] struct A { a: i32, b: i32 } },
                "declared twice",
            ),
            (
                quote! { #[matroska(scope(a, a))] struct A { a: i32 } },
                "twice in this scope",
            ),
            (
                quote! { #[matroska(kind = "")] struct A { id: i32 } },
                "must not be empty",
            ),
            (
                quote! { #[matroska(kind = "a", kind = "b")] struct A { id: i32 } },
                "given twice",
            ),
            (
                quote! { #[matroska(nested(x))] struct A { id: i32 } },
                "no field `x`",
            ),
            (quote! { enum A { B } }, "structs with named fields"),
            (quote! { struct A(i32); }, "structs with named fields"),
            (quote! { struct A<T> { id: T } }, "generic"),
            (
                quote! { struct A { #[matroska(nested)] id: i32 } },
                "on the struct",
            ),
        ];
        for (input, expected) in cases {
            let text = input.to_string();
            let err = error(input);
            assert!(err.contains(expected), "{text}: {err}");
        }
    }

    #[test]
    fn cache_deps_accepts_only_nested() {
        let ok = cache_deps_inner(&syn::parse_quote! {
            #[matroska(nested(article, author))]
            struct Page<T> { article: T, author: Author, views: i64 }
        })
        .unwrap()
        .to_string();
        assert!(ok.contains("CacheDeps for Page"), "{ok}");
        let err = cache_deps_inner(&syn::parse_quote! {
            #[matroska(kind = "page", nested(a))]
            struct Page { a: A }
        })
        .unwrap_err()
        .to_string();
        assert!(err.contains("CacheModel"), "{err}");
        let err = cache_deps_inner(&syn::parse_quote! { struct Page { a: A } })
            .unwrap_err()
            .to_string();
        assert!(err.contains("nested"), "{err}");
    }
}
